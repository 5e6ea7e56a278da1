package io.sparkops.etl;

import org.apache.spark.sql.api.java.UDF1;

/**
 * Microseconds since the epoch of an ISO-8601 UTC timestamp written the usual way,
 * {@code yyyy-MM-ddTHH:mm:ss[.f]Z} (a 'T' or a space in the middle, one to six digits of
 * fraction); null for any other text, which the caller then casts as Spark does.
 *
 * <p>For the text it accepts, the value is the one Spark's cast to timestamp gives: the same
 * proleptic Gregorian calendar and range checks. It is cheaper because it reads that one form
 * only: Spark's cast parses every form it knows and looks the zone "Z" up through two regular
 * expressions on every value.
 */
public final class IsoUtcMicros implements UDF1<String, Long> {
  private static final long MICROS_PER_SECOND = 1_000_000L;
  private static final int FRACTION_DIGITS = 6;

  @Override
  public Long call(String text) {
    return text == null ? null : parse(text);
  }

  static Long parse(String text) {
    int length = text.length();
    if (length < 20 || length > 21 + FRACTION_DIGITS || text.charAt(length - 1) != 'Z') {
      return null;
    }
    char middle = text.charAt(10);
    if (text.charAt(4) != '-' || text.charAt(7) != '-' || (middle != 'T' && middle != ' ')
        || text.charAt(13) != ':' || text.charAt(16) != ':') {
      return null;
    }
    int year = digits(text, 0, 4);
    int month = digits(text, 5, 2);
    int day = digits(text, 8, 2);
    int hour = digits(text, 11, 2);
    int minute = digits(text, 14, 2);
    int second = digits(text, 17, 2);
    if ((year | month | day | hour | minute | second) < 0) {
      return null;
    }
    long fraction = 0;
    if (length > 20) {
      int fractionDigits = length - 21;
      if (text.charAt(19) != '.' || fractionDigits == 0) {
        return null;
      }
      int written = digits(text, 20, fractionDigits);
      if (written < 0) {
        return null;
      }
      fraction = written;
      for (int scale = fractionDigits; scale < FRACTION_DIGITS; scale++) {
        fraction *= 10;
      }
    }
    if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)
        || hour > 23 || minute > 59 || second > 59) {
      return null;
    }
    long seconds = ((daysSinceEpoch(year, month, day) * 24 + hour) * 60 + minute) * 60 + second;
    return seconds * MICROS_PER_SECOND + fraction;
  }

  /** The decimal value of {@code count} digits from {@code from}; -1 if one is not a digit. */
  private static int digits(String text, int from, int count) {
    int value = 0;
    for (int i = from; i < from + count; i++) {
      int digit = text.charAt(i) - '0';
      if (digit < 0 || digit > 9) {
        return -1;
      }
      value = value * 10 + digit;
    }
    return value;
  }

  private static int daysInMonth(int year, int month) {
    if (month == 2) {
      boolean leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
      return leap ? 29 : 28;
    }
    return month == 4 || month == 6 || month == 9 || month == 11 ? 30 : 31;
  }

  /** Days from 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's days_from_civil). */
  private static long daysSinceEpoch(int year, int month, int day) {
    long y = month <= 2 ? year - 1 : year;
    long era = Math.floorDiv(y, 400);
    long yearOfEra = y - era * 400;
    long dayOfYear = (153L * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    long dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear;
    return era * 146097 + dayOfEra - 719468;
  }
}
