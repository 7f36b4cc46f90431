//! PyPy's memory in a host program: the GC settings a [`Builder`](crate::Builder)
//! applies before PyPy starts, the default nursery, and the GC's own figures.
//!
//! PyPy's GC (incminimark) reads its sizes from `PYPY_GC_*` environment
//! variables once, inside `rpython_startup_code`. Each setting here is such a
//! variable; the runtime sets the ones a host chose just before that call and
//! removes them right after, so they reach this process's GC and nothing else
//! (not Python's `os.environ`, not child processes). A variable already in
//! the environment wins over the builder, so that an operator can override a
//! program without rebuilding it.

use std::fmt;

use crate::error::Error;

/// The largest nursery the default picks: PyPy's own size when it cannot
/// read the cache (`NURSERY_SIZE_UNKNOWN_CACHE` in `rpython/memory/gc/env.py`).
pub const DEFAULT_NURSERY_CAP: u64 = 4 * 1024 * 1024;
/// The smallest nursery the default picks: below this, minor collections
/// come so often that their fixed cost shows.
pub const DEFAULT_NURSERY_FLOOR: u64 = 512 * 1024;

/// A size for a GC setting: a number of bytes, or text in the form PyPy reads
/// (`4MB`, `512k`, `1.5GB`: a number with an optional `K`, `M` or `G` and an
/// optional `B`, in either case).
#[derive(Debug, Clone, PartialEq)]
pub enum GcSize {
    Bytes(u64),
    Text(String),
}

impl From<u64> for GcSize {
    fn from(bytes: u64) -> Self {
        GcSize::Bytes(bytes)
    }
}

impl From<&str> for GcSize {
    fn from(text: &str) -> Self {
        GcSize::Text(text.to_string())
    }
}

impl From<String> for GcSize {
    fn from(text: String) -> Self {
        GcSize::Text(text)
    }
}

/// How the nursery (the young generation, where every new object starts) is sized.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Nursery {
    /// Half of the CPU's L2 cache, between [`DEFAULT_NURSERY_FLOOR`] and
    /// [`DEFAULT_NURSERY_CAP`]; see [`default_nursery_size`].
    #[default]
    Default,
    /// Whatever PyPy picks itself (on Linux half of the `cache size` line of
    /// `/proc/cpuinfo`, which can be hundreds of megabytes).
    PyPy,
    /// This size.
    Size(GcSize),
}

/// The GC settings of a [`Builder`](crate::Builder); unset ones keep PyPy's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GcSettings {
    pub(crate) nursery: Nursery,
    pub(crate) max_heap: Option<GcSize>,
    pub(crate) min_heap: Option<GcSize>,
    pub(crate) max_delta: Option<GcSize>,
    pub(crate) increment_step: Option<GcSize>,
    pub(crate) major_collect: Option<f64>,
    pub(crate) growth: Option<f64>,
}

/// The accepted form of a size, for error messages.
const SIZE_FORM: &str = "a whole number of bytes, or a number with a K, M or G suffix and an \
                         optional B as PyPy reads it (4MB, 512K, 1.5GB)";
const FACTOR_FORM: &str = "a plain number greater than 1.0 (1.82, 2)";

pub(crate) const NURSERY_VAR: &str = "PYPY_GC_NURSERY";
pub(crate) const MAX_VAR: &str = "PYPY_GC_MAX";
pub(crate) const MIN_VAR: &str = "PYPY_GC_MIN";
pub(crate) const MAX_DELTA_VAR: &str = "PYPY_GC_MAX_DELTA";
pub(crate) const INCREMENT_STEP_VAR: &str = "PYPY_GC_INCREMENT_STEP";
pub(crate) const MAJOR_COLLECT_VAR: &str = "PYPY_GC_MAJOR_COLLECT";
pub(crate) const GROWTH_VAR: &str = "PYPY_GC_GROWTH";

/// Every variable the settings map to; the ones the runtime may set.
pub const GC_VARIABLES: [&str; 7] = [
    NURSERY_VAR,
    MAX_VAR,
    MIN_VAR,
    MAX_DELTA_VAR,
    INCREMENT_STEP_VAR,
    MAJOR_COLLECT_VAR,
    GROWTH_VAR,
];

/// Parses a size the way PyPy's `env.read_from_env` does, but strictly:
/// what PyPy would silently read as 0 (and so ignore) is an error here.
pub fn parse_size(text: &str) -> Option<u64> {
    let mut number = text;
    if number.len() > 1 && number.ends_with(['b', 'B']) {
        number = &number[..number.len() - 1];
    }
    let factor: u64 = match number.chars().last()? {
        'k' | 'K' => 1 << 10,
        'm' | 'M' => 1 << 20,
        'g' | 'G' => 1 << 30,
        _ => 1,
    };
    if factor != 1 {
        number = &number[..number.len() - 1];
    }
    // Digits with at most one decimal point: no sign, exponent, space or `inf`.
    let well_formed = !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        && number.matches('.').count() <= 1
        && number != ".";
    if !well_formed {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let bytes = value * factor as f64;
    (bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// One setting with where it came from, for error messages.
struct Named<'a> {
    setting: &'static str,
    variable: &'static str,
    /// Set in the process environment rather than by the builder.
    from_env: bool,
    text: &'a str,
}

impl Named<'_> {
    fn describe(&self) -> String {
        if self.from_env {
            format!("{} (from the environment)", self.variable)
        } else {
            format!("{} ({})", self.setting, self.variable)
        }
    }

    fn error(&self, expected: impl Into<String>) -> Error {
        Error::GcSetting {
            setting: self.describe(),
            value: self.text.to_string(),
            expected: expected.into(),
        }
    }
}

/// What the runtime does with the GC's variables at start.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct GcPlan {
    /// Variables to set just before `rpython_startup_code` (none of them is
    /// in the environment already).
    pub(crate) set: Vec<(&'static str, String)>,
    /// The nursery PyPy will use, in bytes, where it is known before start.
    pub(crate) nursery: Option<u64>,
}

impl GcSettings {
    /// Checks every setting and decides which variables to set. `env` reads
    /// the process environment (empty counts as unset, as in PyPy); `l2`
    /// is the L2 cache size for the default nursery.
    pub(crate) fn plan(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        l2: Option<u64>,
    ) -> Result<GcPlan, Error> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let mut plan = GcPlan::default();

        let size = |setting: &'static str,
                    variable: &'static str,
                    ours: Option<&GcSize>|
         -> Result<Option<(u64, bool, String)>, Error> {
            let (text, from_env) = match (env(variable), ours) {
                (Some(text), _) => (text, true),
                (None, Some(GcSize::Bytes(bytes))) => (bytes.to_string(), false),
                (None, Some(GcSize::Text(text))) => (text.clone(), false),
                (None, None) => return Ok(None),
            };
            let named = Named {
                setting,
                variable,
                from_env,
                text: &text,
            };
            let bytes = parse_size(&text).ok_or_else(|| named.error(SIZE_FORM))?;
            if bytes == 0 {
                return Err(named.error(format!("a size of at least 1 byte; {SIZE_FORM}")));
            }
            Ok(Some((bytes, from_env, text)))
        };
        let factor = |setting: &'static str,
                      variable: &'static str,
                      ours: Option<f64>|
         -> Result<Option<(f64, bool)>, Error> {
            let (text, from_env) = match (env(variable), ours) {
                (Some(text), _) => (text, true),
                (None, Some(value)) => (value.to_string(), false),
                (None, None) => return Ok(None),
            };
            let named = Named {
                setting,
                variable,
                from_env,
                text: &text,
            };
            match text.parse::<f64>() {
                Ok(value) if value.is_finite() && value > 1.0 && !text.contains(['e', 'E']) => {
                    Ok(Some((value, from_env)))
                }
                _ => Err(named.error(FACTOR_FORM)),
            }
        };

        let nursery = match &self.nursery {
            Nursery::Size(s) => size("nursery", NURSERY_VAR, Some(s))?,
            _ => size("nursery", NURSERY_VAR, None)?,
        };
        let max_heap = size("max_heap", MAX_VAR, self.max_heap.as_ref())?;
        let min_heap = size("min_heap", MIN_VAR, self.min_heap.as_ref())?;
        let max_delta = size("max_delta", MAX_DELTA_VAR, self.max_delta.as_ref())?;
        let step = size(
            "increment_step",
            INCREMENT_STEP_VAR,
            self.increment_step.as_ref(),
        )?;
        let major = factor("major_collect", MAJOR_COLLECT_VAR, self.major_collect)?;
        let growth = factor("growth", GROWTH_VAR, self.growth)?;

        // The nursery PyPy will really use, and whether we choose it.
        let (nursery_bytes, set_nursery) = match (&nursery, &self.nursery) {
            (Some((bytes, from_env, _)), _) => (Some(*bytes), !from_env),
            (None, Nursery::Default) => (Some(default_nursery_size(l2)), true),
            (None, _) => (None, false),
        };
        if let (Some((max, from_env, text)), Some(nursery)) = (&max_heap, nursery_bytes) {
            if *max < nursery {
                return Err(Named {
                    setting: "max_heap",
                    variable: MAX_VAR,
                    from_env: *from_env,
                    text,
                }
                .error(format!(
                    "a maximum heap of at least the nursery's {nursery} bytes"
                )));
            }
        }
        if let (Some((max, _, _)), Some((min, from_env, text))) = (&max_heap, &min_heap) {
            if min > max {
                return Err(Named {
                    setting: "min_heap",
                    variable: MIN_VAR,
                    from_env: *from_env,
                    text,
                }
                .error(format!(
                    "a minimum heap no larger than the maximum heap's {max} bytes"
                )));
            }
        }

        if set_nursery {
            if let Some(bytes) = nursery_bytes {
                plan.set.push((NURSERY_VAR, bytes.to_string()));
            }
        }
        let ours = |v: Option<(u64, bool, String)>| v.filter(|(_, from_env, _)| !from_env);
        for (variable, value) in [
            (MAX_VAR, ours(max_heap)),
            (MIN_VAR, ours(min_heap)),
            (MAX_DELTA_VAR, ours(max_delta)),
            (INCREMENT_STEP_VAR, ours(step)),
        ] {
            if let Some((bytes, _, _)) = value {
                plan.set.push((variable, bytes.to_string()));
            }
        }
        for (variable, value) in [(MAJOR_COLLECT_VAR, major), (GROWTH_VAR, growth)] {
            if let Some((factor, false)) = value {
                plan.set.push((variable, factor.to_string()));
            }
        }
        plan.nursery = nursery_bytes;
        Ok(plan)
    }
}

/// The nursery embed-runtime gives PyPy unless told otherwise: half of the
/// L2 cache (`l2`, in bytes; see [`l2_cache_size`]), as PyPy intends, kept
/// between [`DEFAULT_NURSERY_FLOOR`] and [`DEFAULT_NURSERY_CAP`]; the cap
/// when the cache size is unknown.
pub fn default_nursery_size(l2: Option<u64>) -> u64 {
    match l2 {
        Some(l2) if l2 > 0 => (l2 / 2).clamp(DEFAULT_NURSERY_FLOOR, DEFAULT_NURSERY_CAP),
        _ => DEFAULT_NURSERY_CAP,
    }
}

/// The size of this machine's L2 cache, in bytes: the smallest L2 data or
/// unified cache of any CPU in sysfs on Linux, `hw.l2cachesize` on macOS;
/// `None` elsewhere or when unreadable.
pub fn l2_cache_size() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        l2_from_sysfs(std::path::Path::new("/sys/devices/system/cpu"))
    }
    #[cfg(target_os = "macos")]
    {
        crate::ffi::sysctl_u64("hw.l2cachesize").filter(|&n| n > 0)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        None
    }
}

/// Reads `cpu<N>/cache/index*/{level,type,size}` under `root`, of the first
/// and the last CPU only: a hybrid CPU numbers its two kinds of core one
/// after the other, and reading every CPU of a 128-core server would cost
/// milliseconds at each start.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn l2_from_sysfs(root: &std::path::Path) -> Option<u64> {
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok();
    let numbers: Vec<u32> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|cpu| cpu.file_name().to_str()?.strip_prefix("cpu")?.parse().ok())
        .collect();
    let (first, last) = (numbers.iter().min()?, numbers.iter().max()?);
    let mut smallest: Option<u64> = None;
    for cpu in [*first, *last] {
        let Ok(indexes) = std::fs::read_dir(root.join(format!("cpu{cpu}/cache"))) else {
            continue;
        };
        for index in indexes.flatten() {
            let dir = index.path();
            let level = read(dir.join("level"));
            let kind = read(dir.join("type"));
            if level.as_deref().map(str::trim) != Some("2")
                || kind.as_deref().map(str::trim) == Some("Instruction")
            {
                continue;
            }
            if let Some(size) = read(dir.join("size")).and_then(|s| parse_size(s.trim())) {
                smallest = Some(smallest.map_or(size, |s| s.min(size)));
            }
        }
    }
    smallest
}

/// The GC's own figures, as PyPy's `gc` module reports them; see
/// [`Runtime::memory`](crate::Runtime::memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Memory the GC uses now for objects (nursery included), in bytes.
    pub gc_used: u64,
    /// The peak of `gc_used` so far.
    pub gc_peak: u64,
    /// Memory the GC has taken from the system (free lists included).
    pub gc_allocated: u64,
    /// The nursery's size.
    pub nursery: u64,
    /// Machine code the JIT wrote.
    pub jit_used: u64,
    /// Minor collections (nursery emptied) since start.
    pub minor_collections: u64,
    /// Major collections (whole heap marked and swept) since start.
    pub major_collections: u64,
    /// Time spent in the GC, in milliseconds, as PyPy counts it.
    pub gc_time_ms: u64,
}

impl MemoryStats {
    /// Reads the `key=value` lines the bootstrap's `memory_stats` returns.
    pub(crate) fn parse(text: &str) -> Result<MemoryStats, Error> {
        let mut stats = MemoryStats::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let bad = || Error::Bridge(format!("unreadable GC figure {line:?}"));
            let (key, value) = line.split_once('=').ok_or_else(bad)?;
            // PyPy reports some figures as floats (time), or -1 when unknown.
            let value: f64 = value.trim().parse().map_err(|_| bad())?;
            let value = if value.is_finite() && value > 0.0 {
                value as u64
            } else {
                0
            };
            match key {
                "gc_used" => stats.gc_used = value,
                "gc_peak" => stats.gc_peak = value,
                "gc_allocated" => stats.gc_allocated = value,
                "nursery" => stats.nursery = value,
                "jit_used" => stats.jit_used = value,
                "minor_collections" => stats.minor_collections = value,
                "major_collections" => stats.major_collections = value,
                "gc_time_ms" => stats.gc_time_ms = value,
                // A newer bootstrap may report more; older runtimes ignore it.
                _ => {}
            }
        }
        Ok(stats)
    }
}

impl fmt::Display for MemoryStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        write!(
            f,
            "GC used {:.1} MB (peak {:.1} MB, allocated {:.1} MB), nursery {:.1} MB, \
             JIT code {:.1} MB, {} minor and {} major collections, {} ms in the GC",
            mb(self.gc_used),
            mb(self.gc_peak),
            mb(self.gc_allocated),
            mb(self.nursery),
            mb(self.jit_used),
            self.minor_collections,
            self.major_collections,
            self.gc_time_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn set(plan: &GcPlan) -> Vec<(&str, &str)> {
        plan.set.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    #[test]
    fn sizes_are_read_as_pypy_reads_them() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("4MB"), Some(4 << 20));
        assert_eq!(parse_size("4mb"), Some(4 << 20));
        assert_eq!(parse_size("4M"), Some(4 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("512KB"), Some(512 << 10));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("1.5GB"), Some(3 << 29));
        assert_eq!(parse_size("100B"), Some(100));
        // sysfs writes cache sizes this way.
        assert_eq!(parse_size("2048K"), Some(2 << 20));
        for bad in [
            "", "B", "4MiB", "4TB", "-1", "4 MB", " 4", "0x10", "1e6", "inf", "nan", ".", "1.2.3",
            "M",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn the_default_nursery_is_half_the_l2_within_bounds() {
        // This project's CI machines: L2 2 MB (and a 300 MB L3 in /proc/cpuinfo).
        assert_eq!(default_nursery_size(Some(2 << 20)), 1 << 20);
        assert_eq!(default_nursery_size(Some(256 << 10)), DEFAULT_NURSERY_FLOOR);
        assert_eq!(default_nursery_size(Some(300 << 20)), DEFAULT_NURSERY_CAP);
        assert_eq!(default_nursery_size(None), DEFAULT_NURSERY_CAP);
        assert_eq!(default_nursery_size(Some(0)), DEFAULT_NURSERY_CAP);
    }

    #[test]
    fn no_settings_give_the_default_nursery_only() {
        let plan = GcSettings::default().plan(&no_env, Some(2 << 20)).unwrap();
        assert_eq!(set(&plan), [(NURSERY_VAR, "1048576")]);
        assert_eq!(plan.nursery, Some(1 << 20));
    }

    #[test]
    fn pypys_own_nursery_sets_nothing() {
        let settings = GcSettings {
            nursery: Nursery::PyPy,
            ..Default::default()
        };
        let plan = settings.plan(&no_env, Some(2 << 20)).unwrap();
        assert!(plan.set.is_empty(), "{plan:?}");
        assert_eq!(plan.nursery, None);
    }

    #[test]
    fn every_setting_becomes_its_variable_in_bytes() {
        let settings = GcSettings {
            nursery: Nursery::Size("2MB".into()),
            max_heap: Some("1.5GB".into()),
            min_heap: Some(GcSize::Bytes(64 << 20)),
            max_delta: Some("200M".into()),
            increment_step: Some("8mb".into()),
            major_collect: Some(1.5),
            growth: Some(2.0),
        };
        let plan = settings.plan(&no_env, None).unwrap();
        assert_eq!(
            set(&plan),
            [
                (NURSERY_VAR, "2097152"),
                (MAX_VAR, "1610612736"),
                (MIN_VAR, "67108864"),
                (MAX_DELTA_VAR, "209715200"),
                (INCREMENT_STEP_VAR, "8388608"),
                (MAJOR_COLLECT_VAR, "1.5"),
                (GROWTH_VAR, "2"),
            ]
        );
    }

    #[test]
    fn the_environment_wins_and_is_left_alone() {
        let env = |name: &str| match name {
            NURSERY_VAR => Some("8MB".to_string()),
            MAX_VAR => Some("1GB".to_string()),
            // Empty means unset, as in PyPy.
            MIN_VAR => Some(String::new()),
            _ => None,
        };
        let settings = GcSettings {
            nursery: Nursery::Size("2MB".into()),
            max_heap: Some("512MB".into()),
            min_heap: Some("16MB".into()),
            ..Default::default()
        };
        let plan = settings.plan(&env, Some(2 << 20)).unwrap();
        assert_eq!(set(&plan), [(MIN_VAR, "16777216")]);
        assert_eq!(plan.nursery, Some(8 << 20));
        // And PYPY_GC_NURSERY in the environment replaces the default too.
        let plan = GcSettings::default().plan(&env, Some(2 << 20)).unwrap();
        assert_eq!(plan.nursery, Some(8 << 20));
        assert!(!plan.set.iter().any(|(k, _)| *k == NURSERY_VAR));
    }

    fn error_of(settings: GcSettings, env: &dyn Fn(&str) -> Option<String>) -> String {
        match settings.plan(env, Some(2 << 20)) {
            Err(e @ Error::GcSetting { .. }) => e.to_string(),
            other => panic!("expected a GcSetting error, got {other:?}"),
        }
    }

    #[test]
    fn bad_values_name_the_setting_and_the_accepted_form() {
        let message = error_of(
            GcSettings {
                nursery: Nursery::Size("4MiB".into()),
                ..Default::default()
            },
            &no_env,
        );
        assert!(
            message.contains("nursery (PYPY_GC_NURSERY)")
                && message.contains("\"4MiB\"")
                && message.contains("4MB, 512K, 1.5GB"),
            "{message}"
        );

        let message = error_of(
            GcSettings {
                nursery: Nursery::Size(GcSize::Bytes(0)),
                ..Default::default()
            },
            &no_env,
        );
        assert!(
            message.contains("nursery") && message.contains("at least 1 byte"),
            "{message}"
        );

        let message = error_of(
            GcSettings {
                nursery: Nursery::Size("8MB".into()),
                max_heap: Some("4MB".into()),
                ..Default::default()
            },
            &no_env,
        );
        assert!(
            message.contains("max_heap (PYPY_GC_MAX) is \"4MB\"") && message.contains("8388608"),
            "{message}"
        );

        // The default nursery counts too.
        let message = error_of(
            GcSettings {
                max_heap: Some(GcSize::Bytes(1000)),
                ..Default::default()
            },
            &no_env,
        );
        assert!(message.contains("max_heap"), "{message}");

        let message = error_of(
            GcSettings {
                max_heap: Some("64MB".into()),
                min_heap: Some("128MB".into()),
                ..Default::default()
            },
            &no_env,
        );
        assert!(message.contains("min_heap (PYPY_GC_MIN)"), "{message}");

        for factor in [1.0, 0.5, f64::NAN, f64::INFINITY] {
            let message = error_of(
                GcSettings {
                    major_collect: Some(factor),
                    ..Default::default()
                },
                &no_env,
            );
            assert!(
                message.contains("major_collect (PYPY_GC_MAJOR_COLLECT)")
                    && message.contains("greater than 1.0"),
                "{message}"
            );
        }
    }

    #[test]
    fn bad_values_in_the_environment_name_the_variable() {
        let env = |name: &str| (name == GROWTH_VAR).then(|| "2x".to_string());
        let message = error_of(GcSettings::default(), &env);
        assert!(
            message.contains("PYPY_GC_GROWTH (from the environment)") && message.contains("\"2x\""),
            "{message}"
        );
        let env = |name: &str| (name == MAX_VAR).then(|| "100KB".to_string());
        let message = error_of(GcSettings::default(), &env);
        assert!(
            message.contains("PYPY_GC_MAX (from the environment)"),
            "{message}"
        );
    }

    #[test]
    fn l2_comes_from_sysfs_not_from_the_last_level_cache() {
        let root = tempfile::tempdir().unwrap();
        let cache = |cpu: &str, index: u32, level: &str, kind: &str, size: &str| {
            let dir = root.path().join(cpu).join(format!("cache/index{index}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("level"), format!("{level}\n")).unwrap();
            std::fs::write(dir.join("type"), format!("{kind}\n")).unwrap();
            std::fs::write(dir.join("size"), format!("{size}\n")).unwrap();
        };
        cache("cpu0", 0, "1", "Data", "48K");
        cache("cpu0", 1, "1", "Instruction", "32K");
        cache("cpu0", 2, "2", "Unified", "2048K");
        cache("cpu0", 3, "3", "Unified", "307200K");
        // A smaller core's L2 decides, as in PyPy: the last CPU's here.
        cache("cpu1", 2, "2", "Unified", "512K");
        cache("cpu11", 2, "2", "Unified", "1024K");
        cache("cpu2", 2, "2", "Unified", "2048K");
        std::fs::create_dir_all(root.path().join("cpufreq")).unwrap();
        assert_eq!(l2_from_sysfs(root.path()), Some(1 << 20));
        assert_eq!(l2_from_sysfs(&root.path().join("missing")), None);
    }

    #[test]
    fn stats_are_read_back() {
        let stats = MemoryStats::parse(
            "gc_used=1048576\ngc_peak=2097152\ngc_allocated=3000000\nnursery=1048576\n\
             jit_used=-1\nminor_collections=12\nmajor_collections=1\ngc_time_ms=3.5\nnew=1\n",
        )
        .unwrap();
        assert_eq!(stats.gc_peak, 2 << 20);
        assert_eq!(stats.jit_used, 0);
        assert_eq!(stats.minor_collections, 12);
        assert_eq!(stats.gc_time_ms, 3);
        assert!(stats.to_string().contains("12 minor"), "{stats}");
        assert!(MemoryStats::parse("gc_used=lots").is_err());
    }
}
