//! Lenient-but-typed numbers: JavaScript clients send byte counts as JSON numbers that may be
//! floats, and `left` as `null` when the size is unknown (`NaN` and `Infinity` serialise so).

use serde::de::{self, Deserializer, Visitor};

/// A non-negative JSON number, floats truncated; anything else (a string, a negative number)
/// is an error.
pub(crate) fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(CountVisitor { allow_null: false })
}

/// [`count`], but `null` reads as "unknown".
pub(crate) fn count_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(CountVisitor { allow_null: true })
}

struct CountVisitor {
    allow_null: bool,
}

impl Visitor<'_> for CountVisitor {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a non-negative number")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v).map(Some).map_err(|_| E::custom("negative number"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.is_finite() && v >= 0.0 {
            // `as` saturates at u64::MAX, which is what a huge count should read as.
            Ok(Some(v as u64))
        } else {
            Err(E::custom("negative number"))
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        if self.allow_null {
            Ok(None)
        } else {
            Err(E::invalid_type(de::Unexpected::Unit, &self))
        }
    }
}
