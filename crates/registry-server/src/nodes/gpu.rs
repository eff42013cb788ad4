//! GPU detection for the node heartbeat.
//!
//! A node reports its GPUs so that callers can place GPU work. The facts come from `nvidia-smi`:
//! one CSV line per GPU from `--query-gpu=...`, and the CUDA version from the
//! `CUDA Version : X.Y` line of `nvidia-smi --query`. A machine without `nvidia-smi`, or with one
//! that fails, times out or prints something unexpected, simply has no GPUs: detection never
//! returns an error and never panics, so it cannot break the heartbeat.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use registry_types::Gpu;

/// The `--query-gpu` fields, in the order [`parse_gpu_csv`] expects them.
pub(crate) const QUERY_GPU_FIELDS: &str =
    "name,temperature.gpu,utilization.gpu,memory.total,memory.used,\
power.draw,power.limit,driver_version,pci.bus_id,compute_mode,pstate";

/// How many columns a `--query-gpu` line has (see [`QUERY_GPU_FIELDS`]).
const COLUMNS: usize = 11;

/// How long one `nvidia-smi` invocation may take before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses the output of
/// `nvidia-smi --query-gpu=<QUERY_GPU_FIELDS> --format=csv,noheader,nounits`.
///
/// One GPU per non-blank line. `intraNodeId` is the GPU's position among the parsed lines,
/// `id` is `<node_url>:<index>`, and every GPU gets `cuda_version`. Unavailable values
/// (`[N/A]`, `[Not Supported]`, `N/A`, empty, anything unparsable) become 0 or an empty string.
/// Lines with fewer than 11 columns are skipped with a warning.
pub fn parse_gpu_csv(csv: &str, node_url: &str, cuda_version: &str) -> Vec<Gpu> {
    let mut gpus = Vec::new();
    for (line_no, line) in csv.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.len() < COLUMNS {
            tracing::warn!(
                line = line_no + 1,
                columns = cols.len(),
                expected = COLUMNS,
                "skipping unparsable nvidia-smi --query-gpu line"
            );
            continue;
        }
        let index = u32::try_from(gpus.len()).unwrap_or(u32::MAX);
        gpus.push(Gpu {
            id: format!("{node_url}:{index}"),
            intra_node_id: index,
            name: text(cols[0]),
            temperature: float(cols[1]),
            gpu_utilization: float(cols[2]),
            memory_total: integer(cols[3]),
            memory_usage: integer(cols[4]),
            power_usage: float(cols[5]),
            power_cap: float(cols[6]),
            // cols[7] is driver_version, which the wire type does not carry.
            bus_id: text(cols[8]),
            compute_mode: text(cols[9]),
            performance_state: text(cols[10]),
            process_details: Vec::new(),
            cuda_version: cuda_version.to_string(),
        });
    }
    gpus
}

/// Finds the CUDA version in `nvidia-smi --query` output, i.e. `12.4` from a line such as
/// `CUDA Version                              : 12.4`. Also accepts the banner form
/// `... CUDA Version: 12.4 |` of plain `nvidia-smi`. `None` when absent or not a version.
pub fn parse_cuda_version(query_output: &str) -> Option<String> {
    query_output.lines().find_map(|line| {
        let (_, rest) = line.split_once("CUDA Version")?;
        let (_, value) = rest.split_once(':')?;
        let version = value.split_whitespace().next()?;
        let looks_like_version = version.starts_with(|c: char| c.is_ascii_digit())
            && version.chars().all(|c| c.is_ascii_digit() || c == '.');
        looks_like_version.then(|| version.to_string())
    })
}

/// Runs `nvidia_smi` to list this node's GPUs. Any failure (program absent, non-zero exit,
/// a 5 s timeout, unparsable output) means no GPUs; if only `--query` fails, the GPUs are still
/// returned with an empty `cuda_version`.
pub(crate) async fn detect_gpus(nvidia_smi: &Path, node_url: &str) -> Vec<Gpu> {
    detect_gpus_with_timeout(nvidia_smi, node_url, COMMAND_TIMEOUT).await
}

async fn detect_gpus_with_timeout(nvidia_smi: &Path, node_url: &str, limit: Duration) -> Vec<Gpu> {
    let query_gpu = format!("--query-gpu={QUERY_GPU_FIELDS}");
    let args = [query_gpu.as_str(), "--format=csv,noheader,nounits"];
    let Some(csv) = run(nvidia_smi, &args, limit).await else {
        return Vec::new();
    };
    if csv.trim().is_empty() {
        return Vec::new();
    }
    let cuda_version = match run(nvidia_smi, &["--query"], limit).await {
        Some(out) => parse_cuda_version(&out).unwrap_or_default(),
        None => String::new(),
    };
    parse_gpu_csv(&csv, node_url, &cuda_version)
}

/// Runs `program args…` and returns its stdout when it exits successfully in time.
async fn run(program: &Path, args: &[&str], limit: Duration) -> Option<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // On timeout the `output()` future is dropped, which kills the child (kill_on_drop).
    let output = match tokio::time::timeout(limit, cmd.output()).await {
        Err(_) => {
            tracing::warn!(
                program = %program.display(),
                ?args,
                timeout = ?limit,
                "nvidia-smi timed out"
            );
            return None;
        }
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(program = %program.display(), "nvidia-smi not found; no GPUs");
            return None;
        }
        Ok(Err(err)) => {
            tracing::warn!(program = %program.display(), error = %err, "cannot run nvidia-smi");
            return None;
        }
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let message = if stderr.trim().is_empty() {
            stdout.trim()
        } else {
            stderr.trim()
        };
        // A machine with the tool but no driver fails every heartbeat: not worth a warning.
        tracing::debug!(
            program = %program.display(),
            ?args,
            status = %output.status,
            message = %truncate(message, 500),
            "nvidia-smi failed"
        );
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Whether nvidia-smi printed a placeholder instead of a value.
fn unavailable(value: &str) -> bool {
    value.is_empty() || value.eq_ignore_ascii_case("N/A") || value.starts_with('[')
}

fn text(value: &str) -> String {
    if unavailable(value) {
        String::new()
    } else {
        value.to_string()
    }
}

fn float(value: &str) -> f64 {
    if unavailable(value) {
        return 0.0;
    }
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => v,
        _ => 0.0,
    }
}

fn integer(value: &str) -> u64 {
    if unavailable(value) {
        return 0;
    }
    if let Ok(v) = value.parse::<u64>() {
        return v;
    }
    // Tolerate a fractional figure ("81920.0"); negative or non-finite values become 0.
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => v.round() as u64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_GPUS: &str = include_str!("../../tests/fixtures/nvidia-smi/two-gpus.csv");
    const ZERO_GPUS: &str = include_str!("../../tests/fixtures/nvidia-smi/zero-gpus.csv");
    const NA_FIELDS: &str = include_str!("../../tests/fixtures/nvidia-smi/na-fields.csv");
    const QUERY: &str = include_str!("../../tests/fixtures/nvidia-smi/query.txt");

    const URL: &str = "http://10.0.0.5:58231";

    #[test]
    fn parses_two_gpus_every_field() {
        let gpus = parse_gpu_csv(TWO_GPUS, URL, "12.4");
        assert_eq!(
            gpus,
            vec![
                Gpu {
                    id: format!("{URL}:0"),
                    intra_node_id: 0,
                    name: "NVIDIA GeForce RTX 4090".into(),
                    bus_id: "00000000:01:00.0".into(),
                    temperature: 46.0,
                    performance_state: "P0".into(),
                    power_usage: 287.45,
                    power_cap: 450.0,
                    memory_usage: 18231,
                    memory_total: 24564,
                    gpu_utilization: 37.0,
                    compute_mode: "Default".into(),
                    process_details: vec![],
                    cuda_version: "12.4".into(),
                },
                Gpu {
                    id: format!("{URL}:1"),
                    intra_node_id: 1,
                    name: "NVIDIA GeForce RTX 3090".into(),
                    bus_id: "00000000:4C:00.0".into(),
                    temperature: 31.0,
                    performance_state: "P8".into(),
                    power_usage: 21.87,
                    power_cap: 350.0,
                    memory_usage: 14,
                    memory_total: 24576,
                    gpu_utilization: 0.0,
                    compute_mode: "Default".into(),
                    process_details: vec![],
                    cuda_version: "12.4".into(),
                },
            ]
        );
    }

    #[test]
    fn parses_zero_gpus() {
        assert!(ZERO_GPUS.trim().is_empty());
        assert!(parse_gpu_csv(ZERO_GPUS, URL, "12.4").is_empty());
        assert!(parse_gpu_csv("\n\n  \r\n", URL, "12.4").is_empty());
    }

    #[test]
    fn unavailable_values_become_zero_or_empty() {
        let gpus = parse_gpu_csv(NA_FIELDS, URL, "");
        assert_eq!(gpus.len(), 3);

        let a100 = &gpus[0];
        assert_eq!(a100.name, "NVIDIA A100-SXM4-40GB");
        assert_eq!(a100.temperature, 33.0);
        assert_eq!(a100.gpu_utilization, 0.0);
        assert_eq!(a100.memory_total, 40960);
        assert_eq!(a100.memory_usage, 0);
        assert_eq!(a100.power_usage, 54.12);
        assert_eq!(a100.power_cap, 400.0);
        assert_eq!(a100.bus_id, "00000000:07:00.0");
        assert_eq!(a100.compute_mode, "Default");
        assert_eq!(a100.performance_state, "P0");
        assert_eq!(a100.cuda_version, "");

        let gtx = &gpus[1];
        assert_eq!(gtx.id, format!("{URL}:1"));
        assert_eq!(gtx.intra_node_id, 1);
        assert_eq!(gtx.name, "NVIDIA GeForce GTX 1650");
        assert_eq!(gtx.temperature, 0.0);
        assert_eq!(gtx.memory_total, 4096);
        assert_eq!(gtx.memory_usage, 0);
        assert_eq!(gtx.power_usage, 0.0);
        assert_eq!(gtx.power_cap, 0.0);
        assert_eq!(gtx.bus_id, "00000000:65:00.0");
        assert_eq!(gtx.compute_mode, "");
        assert_eq!(gtx.performance_state, "");

        let t4 = &gpus[2];
        assert_eq!(t4.name, "Tesla T4");
        assert_eq!(t4.temperature, 0.0);
        assert_eq!(t4.gpu_utilization, 0.0);
        assert_eq!(t4.memory_total, 15360);
        assert_eq!(t4.memory_usage, 3);
        assert_eq!(t4.power_usage, 0.0);
        assert_eq!(t4.power_cap, 70.0);
        assert_eq!(t4.bus_id, "");
        assert_eq!(t4.compute_mode, "Exclusive_Process");
        assert_eq!(t4.performance_state, "P8");
    }

    #[test]
    fn garbage_never_panics() {
        let inputs = [
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            "No devices were found",
            ",,,,,,,,,,,,,,,",
            "a, b, c",
            "name, NaN, inf, -1, 1e999, 1e999, NaN, x, y, z, w",
            "name, 1, 2, -5, 18446744073709551616, 3, 4, d, b, c, p",
            "\u{0}\u{ffff}, é, 💥, \u{202e}, ß, 1.5.5, --, x, y, z, w, extra, columns",
        ];
        for input in inputs {
            let gpus = parse_gpu_csv(input, URL, "12.4");
            for gpu in &gpus {
                assert!(gpu.temperature.is_finite());
                assert!(gpu.gpu_utilization.is_finite());
                assert!(gpu.power_usage.is_finite());
                assert!(gpu.power_cap.is_finite());
            }
        }
        // Short lines are skipped; full-width lines count, even odd ones.
        assert!(parse_gpu_csv(inputs[0], URL, "").is_empty());
        assert!(parse_gpu_csv(inputs[1], URL, "").is_empty());
        assert!(parse_gpu_csv(inputs[3], URL, "").is_empty());
        let odd = parse_gpu_csv(inputs[4], URL, "");
        assert_eq!(odd.len(), 1);
        assert_eq!(odd[0].temperature, 0.0, "NaN becomes 0");
        assert_eq!(odd[0].gpu_utilization, 0.0, "inf becomes 0");
        assert_eq!(odd[0].memory_total, 0, "-1 becomes 0");
        assert_eq!(odd[0].memory_usage, 0, "1e999 becomes 0");
        assert_eq!(odd[0].power_usage, 0.0, "1e999 becomes 0");
        assert_eq!(odd[0].power_cap, 0.0, "NaN becomes 0");
        let big = parse_gpu_csv(inputs[5], URL, "");
        assert_eq!(big[0].memory_total, 0);
        assert_eq!(big[0].memory_usage, u64::MAX, "saturates");
        let weird = parse_gpu_csv(inputs[6], URL, "");
        assert_eq!(weird.len(), 1, "extra columns are ignored");
        assert_eq!(weird[0].memory_total, 0);
        assert_eq!(weird[0].performance_state, "w");

        // A malformed line between two good ones does not consume an index.
        let mixed = format!(
            "{}\nbroken line\n{}",
            TWO_GPUS.lines().next().unwrap(),
            TWO_GPUS.lines().nth(1).unwrap()
        );
        let gpus = parse_gpu_csv(&mixed, URL, "");
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[1].intra_node_id, 1);
        assert_eq!(gpus[1].name, "NVIDIA GeForce RTX 3090");
    }

    #[test]
    fn parses_cuda_version() {
        assert_eq!(parse_cuda_version(QUERY).as_deref(), Some("12.4"));
        assert_eq!(
            parse_cuda_version("CUDA Version : 12.4").as_deref(),
            Some("12.4")
        );
        assert_eq!(
            parse_cuda_version("  CUDA Version:11.8\r\n").as_deref(),
            Some("11.8")
        );
        assert_eq!(
            parse_cuda_version(
                "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |"
            )
            .as_deref(),
            Some("12.4")
        );
        assert_eq!(parse_cuda_version("CUDA Version : N/A"), None);
        assert_eq!(parse_cuda_version("CUDA Version"), None);
        assert_eq!(parse_cuda_version("Driver Version : 550.54.15"), None);
        assert_eq!(parse_cuda_version(""), None);
    }

    #[cfg(unix)]
    mod fake_nvidia_smi {
        use super::*;
        use std::os::unix::fs::PermissionsExt;
        use std::path::PathBuf;

        /// Writes an executable script and waits until it can be executed: another test thread
        /// that forks while the script is open for writing makes `exec` fail with ETXTBSY.
        fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            for _ in 0..100 {
                match std::process::Command::new(&path)
                    .arg("--probe")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                {
                    Err(err) if err.raw_os_error() == Some(26) => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => break,
                }
            }
            path
        }

        /// A fake `nvidia-smi` printing `csv` for `--query-gpu=…` and `query` for `--query`
        /// (or failing on `--query` when `query` is `None`).
        fn fake(dir: &Path, csv: &str, query: Option<&str>) -> PathBuf {
            std::fs::write(dir.join("gpus.csv"), csv).unwrap();
            let query_branch = match query {
                Some(q) => {
                    std::fs::write(dir.join("query.txt"), q).unwrap();
                    format!("cat '{}'", dir.join("query.txt").display())
                }
                None => "echo 'query failed' >&2; exit 2".to_string(),
            };
            let body = format!(
                "case \"$1\" in\n\
                 --query-gpu=*) [ \"$2\" = --format=csv,noheader,nounits ] || exit 3; cat '{}' ;;\n\
                 --query) {query_branch} ;;\n\
                 *) exit 0 ;;\n\
                 esac\n",
                dir.join("gpus.csv").display()
            );
            write_script(dir, "nvidia-smi", &body)
        }

        #[tokio::test]
        async fn detects_gpus_with_fake_nvidia_smi() {
            let dir = tempfile::TempDir::new().unwrap();
            let smi = fake(dir.path(), TWO_GPUS, Some(QUERY));
            let gpus = detect_gpus(&smi, URL).await;
            assert_eq!(gpus, parse_gpu_csv(TWO_GPUS, URL, "12.4"));
            assert_eq!(gpus.len(), 2);
            assert!(gpus.iter().all(|g| g.cuda_version == "12.4"));
        }

        #[tokio::test]
        async fn failing_query_leaves_cuda_version_empty() {
            let dir = tempfile::TempDir::new().unwrap();
            let smi = fake(dir.path(), TWO_GPUS, None);
            let gpus = detect_gpus(&smi, URL).await;
            assert_eq!(gpus, parse_gpu_csv(TWO_GPUS, URL, ""));
        }

        #[tokio::test]
        async fn zero_gpus_from_fake_nvidia_smi() {
            let dir = tempfile::TempDir::new().unwrap();
            let smi = fake(dir.path(), ZERO_GPUS, Some(QUERY));
            assert!(detect_gpus(&smi, URL).await.is_empty());
        }

        #[tokio::test]
        async fn failing_nvidia_smi_means_no_gpus() {
            let dir = tempfile::TempDir::new().unwrap();
            let smi = write_script(
                dir.path(),
                "nvidia-smi",
                "echo 'NVIDIA-SMI has failed because it could not communicate with the driver.'\n\
                 exit 1\n",
            );
            assert!(detect_gpus(&smi, URL).await.is_empty());
        }

        #[tokio::test]
        async fn missing_nvidia_smi_means_no_gpus() {
            let dir = tempfile::TempDir::new().unwrap();
            let smi = dir.path().join("does-not-exist").join("nvidia-smi");
            assert!(detect_gpus(&smi, URL).await.is_empty());
        }

        #[tokio::test]
        async fn hanging_nvidia_smi_times_out() {
            let dir = tempfile::TempDir::new().unwrap();
            let smi = write_script(
                dir.path(),
                "nvidia-smi",
                "[ \"$1\" = --probe ] && exit 0\nexec sleep 30\n",
            );
            let started = std::time::Instant::now();
            let gpus = detect_gpus_with_timeout(&smi, URL, Duration::from_millis(300)).await;
            assert!(gpus.is_empty());
            assert!(started.elapsed() < Duration::from_secs(10));
        }
    }
}

/// Property tests: any output gives a list of GPUs, never a panic; well-formed output
/// gives one GPU a line with the values written.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// One GPU as nvidia-smi describes it, and the line it prints for it.
    #[derive(Debug, Clone)]
    struct Written {
        name: String,
        temperature: u32,
        utilization: u32,
        memory_total: u64,
        memory_used: u64,
        power_draw: f64,
        power_limit: f64,
        bus_id: String,
        compute_mode: String,
        pstate: String,
    }

    impl Written {
        fn line(&self) -> String {
            format!(
                "{}, {}, {}, {}, {}, {:.2}, {:.2}, 550.54.15, {}, {}, {}",
                self.name,
                self.temperature,
                self.utilization,
                self.memory_total,
                self.memory_used,
                self.power_draw,
                self.power_limit,
                self.bus_id,
                self.compute_mode,
                self.pstate
            )
        }
    }

    prop_compose! {
        fn written()(
            name in "NVIDIA [A-Za-z0-9 -]{0,20}[A-Za-z0-9]",
            temperature in 0u32..120,
            utilization in 0u32..=100,
            memory_total in 0u64..1_000_000,
            memory_used in 0u64..1_000_000,
            power_draw in 0u32..100_000,
            power_limit in 0u32..100_000,
            bus_id in "0000[0-9A-F]{4}:[0-9A-F]{2}:[0-9A-F]{2}\\.[0-7]",
            compute_mode in prop::sample::select(vec!["Default", "Exclusive_Process", "Prohibited"]),
            pstate in "P[0-9]{1,2}",
        ) -> Written {
            Written {
                name, temperature, utilization, memory_total, memory_used,
                power_draw: power_draw as f64 / 100.0,
                power_limit: power_limit as f64 / 100.0,
                bus_id, compute_mode: compute_mode.to_string(), pstate,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn well_formed_output_gives_each_gpu_its_values(
            gpus in prop::collection::vec(written(), 0..8),
            blank_lines in any::<bool>(),
        ) {
            let separator = if blank_lines { "\n\n" } else { "\n" };
            let csv: String = gpus.iter().map(|g| g.line() + separator).collect();
            let parsed = parse_gpu_csv(&csv, "http://127.0.0.1:1", "12.4");
            prop_assert_eq!(parsed.len(), gpus.len());
            for (i, (gpu, written)) in parsed.iter().zip(&gpus).enumerate() {
                prop_assert_eq!(gpu.intra_node_id as usize, i);
                prop_assert_eq!(&gpu.id, &format!("http://127.0.0.1:1:{i}"));
                prop_assert_eq!(&gpu.name, &written.name);
                prop_assert_eq!(gpu.temperature, written.temperature as f64);
                prop_assert_eq!(gpu.gpu_utilization, written.utilization as f64);
                prop_assert_eq!(gpu.memory_total, written.memory_total);
                prop_assert_eq!(gpu.memory_usage, written.memory_used);
                prop_assert!((gpu.power_usage - written.power_draw).abs() < 1e-9);
                prop_assert!((gpu.power_cap - written.power_limit).abs() < 1e-9);
                prop_assert_eq!(&gpu.bus_id, &written.bus_id);
                prop_assert_eq!(&gpu.compute_mode, &written.compute_mode);
                prop_assert_eq!(&gpu.performance_state, &written.pstate);
                prop_assert_eq!(&gpu.cuda_version, "12.4");
            }
        }

        /// Any text gives at most one GPU a line, numbered in order, with finite figures.
        #[test]
        fn any_output_gives_gpus_with_finite_figures(
            text in prop_oneof![
                any::<String>(),
                "([^,\n]{0,6}(, ?)?){0,14}(\n([^,\n]{0,6}, ){10,12}[^,\n]{0,6}){0,3}",
                "((\\[N/A\\]|N/A|-?[0-9]{1,30}(\\.[0-9]{0,3})?(e[0-9]{1,4})?|inf|NaN|), ){11}\n",
            ],
        ) {
            let parsed = parse_gpu_csv(&text, "n", "");
            prop_assert!(parsed.len() <= text.lines().count());
            for (i, gpu) in parsed.iter().enumerate() {
                prop_assert_eq!(gpu.intra_node_id as usize, i);
                for figure in [gpu.temperature, gpu.gpu_utilization, gpu.power_usage, gpu.power_cap] {
                    prop_assert!(figure.is_finite());
                }
            }
        }

        /// The version is a number with dots, read from the line that names it, or none.
        #[test]
        fn any_query_output_gives_a_version_or_none(
            text in prop_oneof![
                any::<String>(),
                "[ a-zA-Z|]{0,5}CUDA Version ?:? {0,30}[0-9.a-z:]{0,6}[ |]{0,3}(\n[^\n]{0,10}){0,2}",
            ],
        ) {
            if let Some(version) = parse_cuda_version(&text) {
                prop_assert!(version.starts_with(|c: char| c.is_ascii_digit()));
                prop_assert!(version.chars().all(|c| c.is_ascii_digit() || c == '.'));
                prop_assert!(text.contains(&version));
            }
        }

        #[test]
        fn a_written_version_is_read(major in 1u32..100, minor in 0u32..100, padding in 0usize..40) {
            let text = format!(
                "Driver Version : 550.54.15\nCUDA Version{}: {major}.{minor}\n",
                " ".repeat(padding)
            );
            prop_assert_eq!(parse_cuda_version(&text), Some(format!("{major}.{minor}")));
        }
    }
}
