//! Whole numbers as JSON means them: `8080` and `8080.0` are one number, so a port or a
//! threshold written either way is read (a generated client or a script may write the
//! second); a fraction, a negative or an out-of-range number is still refused.

use serde::de::{Error, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::marker::PhantomData;

struct Whole<T>(T);

impl<'de, T: TryFrom<u64>> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WholeVisitor<T>(PhantomData<T>);

        impl<T: TryFrom<u64>> Visitor<'_> for WholeVisitor<T> {
            type Value = Whole<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a whole number from 0 to {}", max_of::<T>())
            }

            fn visit_u64<E: Error>(self, n: u64) -> Result<Whole<T>, E> {
                T::try_from(n)
                    .map(Whole)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(n), &self))
            }

            fn visit_i64<E: Error>(self, n: i64) -> Result<Whole<T>, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::invalid_value(Unexpected::Signed(n), &self)),
                }
            }

            fn visit_f64<E: Error>(self, n: f64) -> Result<Whole<T>, E> {
                if n.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&n) {
                    self.visit_u64(n as u64)
                } else {
                    Err(E::invalid_value(Unexpected::Float(n), &self))
                }
            }
        }

        deserializer.deserialize_any(WholeVisitor(PhantomData))
    }
}

/// The largest value of `T`, for the error message.
fn max_of<T: TryFrom<u64>>() -> u64 {
    let (mut low, mut high) = (0u64, u64::MAX);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if T::try_from(mid).is_ok() {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    low
}

/// A whole number (`#[serde(deserialize_with = "whole")]`).
pub(crate) fn whole<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    Whole::deserialize(d).map(|Whole(n)| n)
}

/// A whole number that may be absent or `null`.
pub(crate) fn optional_whole<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Option::<Whole<T>>::deserialize(d)?.map(|Whole(n)| n))
}

/// A list of whole numbers; `null` (what a Go client sends for an empty list) is empty.
pub(crate) fn whole_list<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    let list = Option::<Vec<Whole<T>>>::deserialize(d)?.unwrap_or_default();
    Ok(list.into_iter().map(|Whole(n)| n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Ports {
        #[serde(default, deserialize_with = "whole")]
        one: u16,
        #[serde(default, deserialize_with = "optional_whole")]
        maybe: Option<u16>,
        #[serde(default, deserialize_with = "whole_list")]
        many: Vec<u16>,
    }

    #[test]
    fn whole_numbers_read_however_json_writes_them() {
        let read: Ports =
            serde_json::from_str(r#"{"one": 8080.0, "maybe": 1, "many": [2, 3.0]}"#).unwrap();
        assert_eq!(
            (read.one, read.maybe, read.many),
            (8080, Some(1), vec![2, 3])
        );
        let read: Ports = serde_json::from_str(r#"{"maybe": null, "many": null}"#).unwrap();
        assert_eq!((read.one, read.maybe, read.many), (0, None, vec![]));
        for bad in [
            r#"{"one": 1.5}"#,
            r#"{"one": -1}"#,
            r#"{"one": 70000}"#,
            r#"{"many": ["1"]}"#,
        ] {
            let err = serde_json::from_str::<Ports>(bad).unwrap_err().to_string();
            assert!(
                err.contains("whole number from 0 to 65535") || err.contains("invalid type"),
                "{bad}: {err}"
            );
        }
    }
}
