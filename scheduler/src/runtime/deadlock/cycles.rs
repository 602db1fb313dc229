//! Elementary cycles of a small directed graph.
//!
//! Wait-for graphs are tiny and sparse (a mutex waiter has one edge, a
//! queued ticket one, a head ticket one per reader), so a depth-first
//! search from each node over the nodes after it — each cycle is found once,
//! from its lowest node — is plenty; a cap keeps a pathological graph from
//! taking long.

/// At most this many cycles are reported.
pub(crate) const MAX_CYCLES: usize = 64;

/// Every elementary cycle of the graph `edges` (node `i`'s successors),
/// each starting at its lowest node, in order of that node, at most
/// [`MAX_CYCLES`].
pub(crate) fn elementary(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut found = Vec::new();
    let mut on_path = vec![false; edges.len()];
    for start in 0..edges.len() {
        let mut path = vec![start];
        on_path[start] = true;
        search(edges, start, start, &mut path, &mut on_path, &mut found);
        on_path[start] = false;
        if found.len() >= MAX_CYCLES {
            found.truncate(MAX_CYCLES);
            break;
        }
    }
    found
}

/// Extends `path` (which ends at `at`) through nodes above `start`,
/// recording each return to `start`.
fn search(
    edges: &[Vec<usize>],
    start: usize,
    at: usize,
    path: &mut Vec<usize>,
    on_path: &mut [bool],
    found: &mut Vec<Vec<usize>>,
) {
    for &next in &edges[at] {
        if found.len() >= MAX_CYCLES {
            return;
        }
        if next == start {
            found.push(path.clone());
        } else if next > start && !on_path[next] {
            on_path[next] = true;
            path.push(next);
            search(edges, start, next, path, on_path, found);
            path.pop();
            on_path[next] = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cycle_once_from_its_lowest_node() {
        // 0 → 1 → 2 → 0, 1 → 0, 3 → 3, 4 → 0 (no cycle through 4).
        let edges = vec![vec![1], vec![0, 2], vec![0], vec![3], vec![0]];
        assert_eq!(elementary(&edges), [vec![0, 1], vec![0, 1, 2], vec![3]]);
    }

    #[test]
    fn acyclic_graphs_have_none() {
        assert!(elementary(&[vec![1], vec![2], vec![]]).is_empty());
        assert!(elementary(&[]).is_empty());
    }

    #[test]
    fn the_cap_holds() {
        // A complete graph on 8 nodes has thousands of cycles.
        let edges: Vec<Vec<usize>> = (0..8)
            .map(|i| (0..8).filter(|&j| j != i).collect())
            .collect();
        assert_eq!(elementary(&edges).len(), MAX_CYCLES);
    }
}
