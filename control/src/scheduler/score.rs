//! Scores for feasible nodes: least allocated resources, plus spreading
//! a controller's pods across nodes. Higher is better.

use super::cache::{NodeInfo, Request};

/// 0..=100: how much room the node keeps after placing the pod.
fn least_allocated(node: &NodeInfo, request: &Request) -> f64 {
    let (cpu, mem) = request.non_zero();
    let free = |alloc: i64, used: i64| {
        if alloc <= 0 {
            0.0
        } else {
            ((alloc - used) as f64 / alloc as f64).clamp(0.0, 1.0)
        }
    };
    let cpu = free(node.allocatable_cpu_milli, node.nonzero_cpu_milli + cpu);
    let mem = free(node.allocatable_memory, node.nonzero_memory + mem);
    (cpu + mem) * 50.0
}

/// Scores every feasible node; returns the index of the best (the first
/// among equals, from a rotating start so ties spread).
pub fn best(nodes: &[&NodeInfo], request: &Request, owner: Option<&str>, start: usize) -> usize {
    let counts: Vec<usize> = nodes
        .iter()
        .map(|n| owner.and_then(|o| n.owners.get(o)).copied().unwrap_or(0))
        .collect();
    let max_count = counts.iter().copied().max().unwrap_or(0);
    let mut best = (f64::MIN, 0);
    for k in 0..nodes.len() {
        let i = (start + k) % nodes.len();
        let spread = if max_count == 0 {
            100.0
        } else {
            100.0 * (max_count - counts[i]) as f64 / max_count as f64
        };
        let score = least_allocated(nodes[i], request) + spread;
        if score > best.0 {
            best = (score, i);
        }
    }
    best.1
}
