//! The hosted-CI workflow (ci/github-actions.yml) runs the same `cargo xtask` tasks as
//! `.ci/run`, in the same order, after the same dependency installer, with a cache.
//!
//! No hosted runner is reachable from here, so the workflow is checked offline as far as
//! that goes: parsed as YAML and held to the structure GitHub Actions requires (`on` with
//! known events, `jobs` with valid ids, `runs-on`, `steps` each with exactly one of `run`
//! and `uses`, `with` only beside `uses`, known keys at every level, balanced `${{ }}`
//! expressions), the checkout before any step that runs the repository's scripts, and
//! cargo's directories cached.

#[cfg(test)]
mod tests {
    use crate::util::project_root;
    use yaml_rust2::{Yaml, YamlLoader};

    /// The `cargo xtask ...` commands of a shell script, one per line, in order.
    fn xtask_commands(script: &str) -> Vec<String> {
        script
            .lines()
            .map(|l| {
                let code = l.split('#').next().unwrap_or("");
                code.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .filter(|l| l.starts_with("cargo xtask "))
            .collect()
    }

    fn workflow() -> Yaml {
        let text = std::fs::read_to_string(project_root().join("ci/github-actions.yml"))
            .expect("read ci/github-actions.yml");
        YamlLoader::load_from_str(&text)
            .expect("ci/github-actions.yml is YAML")
            .into_iter()
            .next()
            .expect("one document")
    }

    /// Every step of every job, in order.
    fn steps(workflow: &Yaml) -> Vec<&Yaml> {
        let jobs = workflow["jobs"].as_hash().expect("jobs");
        assert!(!jobs.is_empty(), "the workflow has no job");
        jobs.values()
            .flat_map(|job| job["steps"].as_vec().expect("a job's steps").iter())
            .collect()
    }

    #[test]
    fn the_hosted_workflow_runs_the_same_tasks_as_ci_run() {
        let ci_run = std::fs::read_to_string(project_root().join(".ci/run")).unwrap();
        let expected = xtask_commands(&ci_run);
        assert!(
            expected
                .iter()
                .any(|c| c.starts_with("cargo xtask test-offline")),
            ".ci/run runs test-offline: {expected:?}"
        );
        let workflow = workflow();
        let steps = steps(&workflow);
        let scripts: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
        let actual: Vec<String> = scripts.iter().flat_map(|s| xtask_commands(s)).collect();
        assert_eq!(actual, expected, "ci/github-actions.yml and .ci/run differ");

        // The same installer runs before the tasks.
        let install = scripts
            .iter()
            .position(|s| s.contains("bash ci/install-deps.sh"))
            .expect("the workflow runs ci/install-deps.sh");
        let first_task = scripts
            .iter()
            .position(|s| !xtask_commands(s).is_empty())
            .unwrap();
        assert!(install < first_task, "install-deps.sh runs after the tasks");
    }

    #[test]
    fn the_hosted_workflow_caches_cargo_on_the_lock_file() {
        let workflow = workflow();
        let steps = steps(&workflow);
        let is_cache = |s: &Yaml| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/cache@"))
        };
        let cache = *steps.iter().find(|s| is_cache(s)).expect("a cache step");
        let paths: Vec<&str> = cache["with"]["path"]
            .as_str()
            .expect("cached paths")
            .lines()
            .map(str::trim)
            .collect();
        for dir in [
            "~/.cargo/registry/index",
            "~/.cargo/registry/cache",
            "~/.cargo/git/db",
            "target",
        ] {
            assert!(paths.contains(&dir), "{dir} is not cached: {paths:?}");
        }
        // Restored before the first cargo command, not after.
        let cache_at = steps.iter().position(|s| is_cache(s)).unwrap();
        let first_cargo = steps
            .iter()
            .position(|s| s["run"].as_str().is_some_and(|r| r.contains("cargo ")))
            .expect("a step running cargo");
        assert!(
            cache_at < first_cargo,
            "the cache is restored after cargo ran"
        );
        let key = cache["with"]["key"].as_str().expect("cache key");
        assert!(key.contains("hashFiles('Cargo.lock'"), "{key}");
    }

    /// Keys GitHub Actions accepts at the top of a workflow, in a job and in a step.
    const WORKFLOW_KEYS: &[&str] = &[
        "name",
        "run-name",
        "on",
        "permissions",
        "env",
        "defaults",
        "concurrency",
        "jobs",
    ];
    const JOB_KEYS: &[&str] = &[
        "name",
        "permissions",
        "needs",
        "if",
        "runs-on",
        "environment",
        "concurrency",
        "outputs",
        "env",
        "defaults",
        "steps",
        "timeout-minutes",
        "strategy",
        "continue-on-error",
        "container",
        "services",
        "uses",
        "with",
        "secrets",
    ];
    const STEP_KEYS: &[&str] = &[
        "id",
        "if",
        "name",
        "uses",
        "run",
        "shell",
        "with",
        "env",
        "working-directory",
        "continue-on-error",
        "timeout-minutes",
    ];
    /// Events this project's workflow may start on (a subset of GitHub's).
    const EVENTS: &[&str] = &[
        "push",
        "pull_request",
        "workflow_dispatch",
        "schedule",
        "merge_group",
        "workflow_call",
    ];

    fn keys(map: &Yaml) -> Vec<String> {
        map.as_hash()
            .map(|h| {
                h.keys()
                    .map(|k| k.as_str().map_or_else(|| format!("{k:?}"), String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn unknown_keys(what: &str, map: &Yaml, allowed: &[&str], problems: &mut Vec<String>) {
        for key in keys(map) {
            if !allowed.contains(&key.as_str()) {
                problems.push(format!("{what}: unknown key {key:?}"));
            }
        }
    }

    /// Every string in `y` (keys and values, nested).
    fn strings(y: &Yaml, out: &mut Vec<String>) {
        match y {
            Yaml::String(s) => out.push(s.clone()),
            Yaml::Array(a) => a.iter().for_each(|v| strings(v, out)),
            Yaml::Hash(h) => h.iter().for_each(|(k, v)| {
                strings(k, out);
                strings(v, out);
            }),
            _ => {}
        }
    }

    /// What GitHub Actions would refuse in `workflow` (empty: nothing).
    fn structure_problems(workflow: &Yaml) -> Vec<String> {
        let mut problems = Vec::new();
        if workflow.as_hash().is_none() {
            return vec!["the workflow is not a mapping".into()];
        }
        unknown_keys("workflow", workflow, WORKFLOW_KEYS, &mut problems);
        // `on`: an event name, a list of them, or a map keyed by them.
        let on = &workflow["on"];
        let events: Vec<String> = match on {
            Yaml::String(e) => vec![e.clone()],
            Yaml::Array(a) => a
                .iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect(),
            Yaml::Hash(_) => keys(on),
            _ => Vec::new(),
        };
        if events.is_empty() {
            problems.push("`on` names no event".into());
        }
        for e in &events {
            if !EVENTS.contains(&e.as_str()) {
                problems.push(format!("on: unknown event {e:?}"));
            }
        }
        let Some(jobs) = workflow["jobs"].as_hash().filter(|j| !j.is_empty()) else {
            problems.push("`jobs` is missing or empty".into());
            return problems;
        };
        for (id, job) in jobs {
            let id = id.as_str().unwrap_or("");
            let valid_id = id
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_id {
                problems.push(format!("job id {id:?} is not valid"));
            }
            let what = format!("job {id}");
            unknown_keys(&what, job, JOB_KEYS, &mut problems);
            let runs_on_ok = match &job["runs-on"] {
                Yaml::String(s) => !s.is_empty(),
                Yaml::Array(a) => !a.is_empty() && a.iter().all(|l| l.as_str().is_some()),
                Yaml::Hash(h) => !h.is_empty(),
                _ => false,
            };
            if !runs_on_ok {
                problems.push(format!("{what}: no `runs-on`"));
            }
            if let Some(t) = job["timeout-minutes"].as_i64() {
                if t <= 0 {
                    problems.push(format!("{what}: timeout-minutes {t}"));
                }
            }
            if !job["container"].is_badvalue() && job["container"]["image"].as_str().is_none() {
                problems.push(format!("{what}: container without an image"));
            }
            let Some(steps) = job["steps"].as_vec().filter(|s| !s.is_empty()) else {
                problems.push(format!("{what}: no steps"));
                continue;
            };
            let mut checked_out = false;
            for (n, step) in steps.iter().enumerate() {
                let what = format!("{what} step {}", n + 1);
                if step.as_hash().is_none() {
                    problems.push(format!("{what}: not a mapping"));
                    continue;
                }
                unknown_keys(&what, step, STEP_KEYS, &mut problems);
                let run = step["run"].as_str();
                let uses = step["uses"].as_str();
                match (run, uses) {
                    (Some(_), Some(_)) => problems.push(format!("{what}: both `run` and `uses`")),
                    (None, None) => problems.push(format!("{what}: neither `run` nor `uses`")),
                    _ => {}
                }
                if let Some(uses) = uses {
                    let (action, version) = uses.split_once('@').unwrap_or((uses, ""));
                    let local = uses.starts_with("./") || uses.starts_with("docker://");
                    if !local && (action.split('/').count() < 2 || version.is_empty()) {
                        problems.push(format!("{what}: `uses: {uses}` is not owner/repo@ref"));
                    }
                    checked_out |= action == "actions/checkout";
                } else if !step["with"].is_badvalue() {
                    problems.push(format!("{what}: `with` without `uses`"));
                }
                if run.is_some_and(|r| r.contains("ci/") || r.contains("cargo xtask"))
                    && !checked_out
                {
                    problems.push(format!(
                        "{what}: runs the repository's scripts before actions/checkout"
                    ));
                }
            }
        }
        let mut all = Vec::new();
        strings(workflow, &mut all);
        for s in all {
            if s.matches("${{").count() != s.matches("}}").count() {
                problems.push(format!("unbalanced expression in {s:?}"));
            }
        }
        problems
    }

    #[test]
    fn the_hosted_workflow_has_the_structure_github_requires() {
        let problems = structure_problems(&workflow());
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn the_structure_check_finds_what_github_would_refuse() {
        let broken = r#"
name: ci
on: [push, pul_request]
trigger: x
jobs:
  9bad:
    steps:
      - run: bash ci/install-deps.sh
      - uses: actions/checkout@v4
        run: echo both
      - name: nothing
      - uses: actions/cache
      - run: echo ${{ github.ref }
        with: { a: 1 }
  empty:
    runs-on: ubuntu-latest
    container: { options: --cap-add SYS_ADMIN }
"#;
        let yaml = YamlLoader::load_from_str(broken).unwrap().remove(0);
        let problems = structure_problems(&yaml).join("\n");
        for expected in [
            "workflow: unknown key \"trigger\"",
            "on: unknown event \"pul_request\"",
            "job id \"9bad\" is not valid",
            "job 9bad: no `runs-on`",
            "job 9bad step 1: runs the repository's scripts before actions/checkout",
            "job 9bad step 2: both `run` and `uses`",
            "job 9bad step 3: neither `run` nor `uses`",
            "job 9bad step 4: `uses: actions/cache` is not owner/repo@ref",
            "job 9bad step 5: `with` without `uses`",
            "unbalanced expression in \"echo ${{ github.ref }\"",
            "job empty: container without an image",
            "job empty: no steps",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} not in:\n{problems}"
            );
        }
        let no_jobs = YamlLoader::load_from_str("on: push\n").unwrap().remove(0);
        assert_eq!(structure_problems(&no_jobs), ["`jobs` is missing or empty"]);
    }

    #[test]
    fn commands_are_read_from_scripts_without_comments_or_other_lines() {
        let script = "set -e\n# cargo xtask bench\n  cargo xtask test-offline  \n\
                      cargo   xtask test-gluster --fixture native # live\necho cargo xtask x\n";
        assert_eq!(
            xtask_commands(script),
            [
                "cargo xtask test-offline",
                "cargo xtask test-gluster --fixture native"
            ]
        );
    }
}
