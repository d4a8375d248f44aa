//! The time as objects carry it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Now, to the second (object timestamps have no fraction).
pub fn time_now() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}
