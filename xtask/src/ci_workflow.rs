//! The hosted-CI workflow (ci/github-actions.yml) runs the same `cargo xtask` tasks as
//! `.ci/run`, in the same order, after the same dependency installer, with a cache.

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
        let cache = steps(&workflow)
            .into_iter()
            .find(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("actions/cache@"))
            })
            .expect("a cache step");
        let paths = cache["with"]["path"].as_str().expect("cached paths");
        for dir in ["~/.cargo/registry", "target"] {
            assert!(paths.contains(dir), "{dir} is not cached: {paths}");
        }
        let key = cache["with"]["key"].as_str().expect("cache key");
        assert!(key.contains("hashFiles('Cargo.lock'"), "{key}");
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
