//! Pacing of loops that recompute something from watched changes (the
//! Endpoints controller, a node's Service proxy, DNS and Ingress tables):
//! a change after a quiet spell is handled at once, so that a new pod is
//! reachable without waiting out a timer; during a burst, passes come at
//! most once per window and each takes everything that arrived meanwhile.

use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::Instant;

pub struct Pacer {
    window: Duration,
    last_pass: Option<Instant>,
}

impl Pacer {
    pub fn new(window: Duration) -> Pacer {
        Pacer {
            window,
            last_pass: None,
        }
    }

    /// Hands `apply` what is waiting on `changes` and, when the last pass
    /// was less than a window ago, what arrives until the window is over;
    /// the caller's pass follows.
    pub async fn gather<S, F>(&mut self, changes: &mut S, mut apply: F)
    where
        S: Stream + Unpin,
        F: FnMut(S::Item),
    {
        let deadline = self
            .last_pass
            .map_or_else(Instant::now, |t| t + self.window);
        // A timeout polls its future before it looks at the deadline, so
        // what is ready is taken even when the deadline has passed.
        while let Ok(Some(more)) = tokio::time::timeout_at(deadline, changes.next()).await {
            apply(more);
        }
        self.last_pass = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_quiet_spell_waits_for_nothing_and_a_burst_is_gathered() {
        let window = Duration::from_millis(300);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let mut changes = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let mut pacer = Pacer::new(window);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        let mut seen = Vec::new();
        let started = Instant::now();
        pacer.gather(&mut changes, |n| seen.push(n)).await;
        assert_eq!(seen, [1, 2]);
        assert!(started.elapsed() < window, "the first pass did not wait");

        // Right after a pass, changes are gathered until the window ends.
        let sender = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            sender.send(3).unwrap();
        });
        seen.clear();
        pacer.gather(&mut changes, |n| seen.push(n)).await;
        assert_eq!(seen, [3]);
        assert!(started.elapsed() >= window);
    }
}
