-- Argo CD health of an ETLPipeline (etl.sparkops.io/v1alpha1), for the argocd-cm entry
-- resource.customizations.health.etl.sparkops.io_ETLPipeline (see helm/README.md).
-- The operator writes kstatus conditions: Stalled (cannot go on without a change: an invalid
-- spec, a missing Secret, an open circuit, a failed run not retried), Reconciling (a run pending,
-- running or stopping, a retry in backoff, a run waiting for a slot) and Ready. An operator that
-- wrote none of them is judged by status.phase alone.
local hs = {}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the pipeline"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local phase = status.phase or ""
local ready = condition(status.conditions, "Ready")
local stalled = condition(status.conditions, "Stalled")
local reconciling = condition(status.conditions, "Reconciling")

if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = text(ready, "spec.suspend is true")
  return hs
end

if stalled ~= nil or reconciling ~= nil then
  if stalled ~= nil and stalled.status == "True" then
    hs.status = "Degraded"
    hs.message = text(stalled, phase)
  elseif reconciling ~= nil and reconciling.status == "True" then
    hs.status = "Progressing"
    hs.message = text(reconciling, phase)
  else
    -- Nothing under way and nothing stuck: the last run succeeded, a streaming driver runs,
    -- or a schedule waits for its slot.
    hs.status = "Healthy"
    hs.message = text(ready, phase)
  end
  return hs
end

if phase == "Succeeded" or (ready ~= nil and ready.status == "True") then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "CircuitOpen" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = text(ready, phase)
return hs
