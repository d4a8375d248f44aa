//! The HorizontalPodAutoscaler's arithmetic, as Kubernetes' controller
//! does it: a metric's proposal (`ceil(ready pods × current / target)`,
//! nothing when within the 10 % tolerance), the stabilization window over
//! past recommendations, and the scaling policies that bound one step.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};

/// Changes within this fraction of the target do not scale.
const TOLERANCE: f64 = 0.1;

/// The replicas a metric proposes: `ratio` is current ÷ target usage.
pub fn proposal(current: i32, ready_pods: i32, ratio: f64) -> i32 {
    if (ratio - 1.0).abs() <= TOLERANCE || !ratio.is_finite() {
        return current;
    }
    (f64::from(ready_pods.max(1)) * ratio).ceil() as i32
}

/// What the controller remembers of one HPA between syncs.
#[derive(Default)]
pub struct History {
    /// (when, recommended replicas) over the longest window.
    recommendations: VecDeque<(Instant, i32)>,
    /// (when, replicas added (+) or removed (−)) for the policies' periods.
    changes: VecDeque<(Instant, i32)>,
}

fn rules_or(rules: Option<&HPAScalingRules>, up: bool) -> (i32, String, Vec<(String, i32, i32)>) {
    let default_window = if up { 0 } else { 300 };
    let window = rules
        .and_then(|r| r.stabilization_window_seconds)
        .unwrap_or(default_window);
    let select = rules
        .and_then(|r| r.select_policy.clone())
        .unwrap_or_else(|| "Max".into());
    let policies = match rules.and_then(|r| r.policies.clone()) {
        Some(p) => p
            .into_iter()
            .map(|p| (p.type_, p.value, p.period_seconds))
            .collect(),
        // Kubernetes' defaults: up by 100 % or 4 pods per 15 s, down by 100 %.
        None if up => vec![("Percent".into(), 100, 15), ("Pods".into(), 4, 15)],
        None => vec![("Percent".into(), 100, 15)],
    };
    (window, select, policies)
}

impl History {
    /// The replicas to set now, from the metrics' recommendation, within
    /// `min..=max`; also whether a limit (range or policy) held it back.
    pub fn decide(
        &mut self,
        now: Instant,
        current: i32,
        recommended: i32,
        min: i32,
        max: i32,
        behavior: Option<&HorizontalPodAutoscalerBehavior>,
    ) -> (i32, bool) {
        let (up_window, up_select, up_policies) =
            rules_or(behavior.and_then(|b| b.scale_up.as_ref()), true);
        let (down_window, down_select, down_policies) =
            rules_or(behavior.and_then(|b| b.scale_down.as_ref()), false);
        self.recommendations.push_back((now, recommended));
        let longest = Duration::from_secs(up_window.max(down_window).max(0) as u64);
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > longest)
        {
            self.recommendations.pop_front();
        }
        let within = |secs: i32| {
            let span = Duration::from_secs(secs.max(0) as u64);
            self.recommendations
                .iter()
                .filter(move |(t, _)| now.duration_since(*t) <= span)
                .map(|(_, r)| *r)
        };
        // Up: the lowest recommendation of the up window; down: the highest
        // of the down window (so a dip does not scale in at once).
        let up_to = within(up_window).min().unwrap_or(recommended);
        let down_to = within(down_window).max().unwrap_or(recommended);
        let mut desired = current;
        if up_to > current {
            desired = up_to;
        }
        if down_to < current {
            desired = down_to;
        }
        let mut limited = false;
        if desired > current {
            let limit = self.limit(now, current, &up_policies, &up_select, true);
            if desired > limit {
                desired = limit;
                limited = true;
            }
        } else if desired < current {
            let limit = self.limit(now, current, &down_policies, &down_select, false);
            if desired < limit {
                desired = limit;
                limited = true;
            }
        }
        let clamped = desired.clamp(min.max(0), max.max(min));
        limited |= clamped != desired;
        if clamped != current {
            self.changes.push_back((now, clamped - current));
        }
        let keep = Duration::from_secs(1800);
        while self
            .changes
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > keep)
        {
            self.changes.pop_front();
        }
        (clamped, limited)
    }

    /// The furthest the policies let replicas go from `current` now.
    fn limit(
        &self,
        now: Instant,
        current: i32,
        policies: &[(String, i32, i32)],
        select: &str,
        up: bool,
    ) -> i32 {
        if select == "Disabled" {
            return current;
        }
        let bounds = policies.iter().map(|(kind, value, period)| {
            let span = Duration::from_secs((*period).max(0) as u64);
            // What the period already moved in this direction.
            let moved: i32 = self
                .changes
                .iter()
                .filter(|(t, c)| now.duration_since(*t) <= span && (*c > 0) == up)
                .map(|(_, c)| c.abs())
                .sum();
            let start = if up { current - moved } else { current + moved };
            let step = if kind == "Pods" {
                *value
            } else {
                let fraction = f64::from(start) * f64::from(*value) / 100.0;
                if up {
                    fraction.ceil() as i32
                } else {
                    fraction.floor() as i32
                }
            };
            if up { start + step } else { start - step }
        });
        let chosen = match (select, up) {
            ("Min", true) | ("Max", false) => bounds.min(),
            _ => bounds.max(),
        };
        let bound = chosen.unwrap_or(current);
        if up {
            bound.max(current)
        } else {
            bound.min(current).max(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::autoscaling::v2::HPAScalingRules;

    #[test]
    fn a_metric_proposes_in_proportion_outside_the_tolerance() {
        assert_eq!(proposal(2, 2, 1.05), 2);
        assert_eq!(proposal(2, 2, 2.0), 4);
        assert_eq!(proposal(4, 4, 0.3), 2);
        assert_eq!(proposal(1, 1, 4.6), 5);
    }

    #[test]
    fn scale_down_waits_out_its_window_and_scale_up_is_bounded() {
        let start = Instant::now();
        let mut h = History::default();
        // Up from 1 to 10: the default policies allow +4 or +100 %.
        assert_eq!(h.decide(start, 1, 10, 1, 10, None), (5, true));
        // Down: the 300 s window remembers the 10.
        let later = start + Duration::from_secs(60);
        assert_eq!(h.decide(later, 5, 1, 1, 10, None).0, 5);
        // A short window lets it go.
        let behavior = HorizontalPodAutoscalerBehavior {
            scale_down: Some(HPAScalingRules {
                stabilization_window_seconds: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let much_later = start + Duration::from_secs(120);
        assert_eq!(
            h.decide(much_later, 5, 1, 1, 10, Some(&behavior)),
            (1, false)
        );
    }

    #[test]
    fn the_range_bounds_every_decision() {
        let mut h = History::default();
        let now = Instant::now();
        assert_eq!(h.decide(now, 3, 8, 1, 4, None), (4, true));
        assert_eq!(h.decide(now, 1, 0, 2, 4, None), (2, true));
    }
}
