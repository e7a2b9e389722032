//! Side by side: one thread per item (a lab has a handful of clients, controllers or nodes, and
//! each item mostly waits on a process), reported as each one finishes.

use std::sync::mpsc;

/// Runs `work` on every item at once. `done(item, result, finished_so_far)` is called on this
/// thread as each one finishes (in the order they finish); the results come back in item order.
pub fn each<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&T) -> R + Sync,
    mut done: impl FnMut(&T, &R, usize),
) -> Vec<R> {
    let (tx, rx) = mpsc::channel();
    let mut results: Vec<Option<R>> = items.iter().map(|_| None).collect();
    std::thread::scope(|s| {
        for (i, item) in items.iter().enumerate() {
            let tx = tx.clone();
            let work = &work;
            s.spawn(move || {
                let _ = tx.send((i, work(item)));
            });
        }
        drop(tx);
        for (finished, (i, r)) in rx.into_iter().enumerate() {
            done(&items[i], &r, finished + 1);
            results[i] = Some(r);
        }
    });
    // Every thread sent exactly one result (a panic in one ends the scope with that panic).
    results.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn results_come_back_in_item_order_and_each_is_reported_once() {
        let items = [30u64, 10, 20];
        let mut seen = Vec::new();
        let out = each(
            &items,
            |ms| {
                std::thread::sleep(Duration::from_millis(*ms));
                ms * 2
            },
            |item, r, n| seen.push((*item, *r, n)),
        );
        assert_eq!(out, vec![60, 20, 40]);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.iter().map(|s| s.2).collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
