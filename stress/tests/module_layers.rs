//! The modules of `stress/src` depend on each other one way: no cycle among the `crate::`
//! paths. Run with `--nocapture` to see the layers.
//!
//! Each top-level module (`cli`, `settings`, `workloads`, ...; a folder counts as one) is a
//! node; a `crate::X` path anywhere in a module's files is an edge to `X`. The graph must be
//! acyclic, and printing it in layers (each module above everything it uses) shows the
//! architecture as built.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Every top-level module and the modules its `crate::` paths name.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(
                fs::read_dir(&path)
                    .unwrap()
                    .map(|entry| entry.unwrap().path()),
            );
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let uses = graph.entry(module.clone()).or_default();
        let text = fs::read_to_string(&path).unwrap();
        for code in text
            .lines()
            .map(|line| line.split("//").next().unwrap_or(""))
        {
            uses.extend(crate_paths(code).into_iter().filter(|name| *name != module));
        }
    }
    graph
}

/// The first segment of every `crate::` path in `code`, including those inside a
/// `use crate::{a, b::c}` group.
fn crate_paths(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let name = item.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() && name != "self" {
                    names.push(name.to_owned());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.push(name);
            }
        }
    }
    names
}

/// The modules in layers, lowest first; `Err` with the modules left over when there is a
/// cycle among them.
fn layers(
    graph: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<Vec<String>>, BTreeSet<String>> {
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut layers = Vec::new();
    while placed.len() < graph.len() {
        let layer: Vec<String> = graph
            .iter()
            .filter(|(name, uses)| {
                !placed.contains(*name)
                    && uses
                        .iter()
                        .all(|used| placed.contains(used) || !graph.contains_key(used))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if layer.is_empty() {
            return Err(graph
                .keys()
                .filter(|name| !placed.contains(*name))
                .cloned()
                .collect());
        }
        placed.extend(layer.iter().cloned());
        layers.push(layer);
    }
    Ok(layers)
}

#[test]
fn the_modules_form_no_cycle() {
    let graph = graph();
    for module in ["cli", "settings", "workloads", "report", "soak", "app"] {
        assert!(graph.contains_key(module), "{module} not found: {graph:?}");
    }
    match layers(&graph) {
        Ok(layers) => {
            for (level, layer) in layers.iter().enumerate().rev() {
                println!("layer {level}: {}", layer.join(", "));
            }
        }
        Err(cycle) => {
            let edges: Vec<String> = cycle
                .iter()
                .map(|name| format!("{name} -> {:?}", graph[name]))
                .collect();
            panic!("import cycle among {cycle:?}:\n{}", edges.join("\n"));
        }
    }
    assert!(!graph["settings"].contains("cli") && !graph["settings"].contains("workloads"));
}

#[test]
fn the_checker_sees_paths_and_cycles() {
    assert_eq!(
        crate_paths("use crate::{self, cli::Parsed, exit::Exit}; crate::soak::run()"),
        ["cli", "exit", "soak"]
    );
    let cyclic: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("c".to_owned(), BTreeSet::new()),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        layers(&cyclic).unwrap_err(),
        BTreeSet::from(["a".to_owned(), "b".to_owned()])
    );
}
