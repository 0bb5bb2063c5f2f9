//! Parity dispatch over every crate: a fixture folder runs the module its `meta.json` `kind`
//! names; a manifest file builds its full-size model without allocating weights.

use std::path::{Path, PathBuf};

use faceclip_core::{CoverageReport, Device, Error, Fixture, Manifest, ParityReport, Result};

/// What a parity check found.
#[derive(Debug)]
pub enum Outcome {
    /// A fixture ran; the report says whether it passed.
    Fixture(ParityReport),
    /// A manifest was walked; the report says whether it matched exactly.
    Manifest(CoverageReport),
    /// The kind or manifest is not ported yet.
    Unsupported(String),
}

/// One checked path with its outcome.
#[derive(Debug)]
pub struct Checked {
    pub path: PathBuf,
    /// The fixture folder or manifest name shown in reports.
    pub name: String,
    pub outcome: Result<Outcome>,
}

impl Checked {
    /// The one report line: `PASS|FAIL|UNSUPPORTED <name> ...`.
    pub fn line(&self) -> String {
        match &self.outcome {
            Ok(Outcome::Fixture(r)) => {
                let (atol, rtol) = r.tolerance();
                let mut s = format!(
                    "{} {} max_abs={:.3e} max_rel={:.3e} atol={atol:e} rtol={rtol:e}",
                    if r.pass() { "PASS" } else { "FAIL" },
                    self.name,
                    r.max_abs(),
                    r.max_rel()
                );
                for f in r.failures() {
                    s.push_str(&format!("\n    {f}"));
                }
                s
            }
            Ok(Outcome::Manifest(c)) => {
                let mut s = format!(
                    "{} {} missing={} unexpected={} mismatched={}",
                    if c.is_exact() { "PASS" } else { "FAIL" },
                    self.name,
                    c.missing.len(),
                    c.unexpected.len(),
                    c.mismatched.len()
                );
                if !c.is_exact() {
                    s.push_str(&format!("\n    {c}").replace('\n', "\n    "));
                }
                s
            }
            Ok(Outcome::Unsupported(kind)) => format!("UNSUPPORTED {} ({kind})", self.name),
            Err(e) => format!("FAIL {} error: {e}", self.name),
        }
    }

    /// True for a passing fixture or an exact manifest.
    pub fn passed(&self) -> bool {
        match &self.outcome {
            Ok(Outcome::Fixture(r)) => r.pass(),
            Ok(Outcome::Manifest(c)) => c.is_exact(),
            _ => false,
        }
    }

    /// True when the kind is not ported.
    pub fn unsupported(&self) -> bool {
        matches!(self.outcome, Ok(Outcome::Unsupported(_)))
    }
}

/// Runs one fixture folder.
pub fn run_fixture(fixture: &Fixture, device: &Device) -> Result<Outcome> {
    let hooks: [fn(&Fixture, &Device) -> faceclip_core::ParityOutcome; 5] = [
        faceclip_encoders::parity::run_fixture,
        faceclip_unet::parity::run_fixture,
        faceclip_dit::parity::run_fixture,
        faceclip_detect::parity::run_fixture,
        crate::schedulers::parity::run_fixture,
    ];
    for hook in hooks {
        if let Some(r) = hook(fixture, device) {
            return r.map(Outcome::Fixture);
        }
    }
    match fixture.kind()? {
        "pipeline_sdxl" => crate::sdxl::parity(fixture, device).map(Outcome::Fixture),
        "pipeline_flux" => crate::flux::parity(fixture, device).map(Outcome::Fixture),
        kind => Ok(Outcome::Unsupported(kind.to_string())),
    }
}

/// Walks one manifest.
pub fn check_manifest(manifest: &Manifest, device: &Device) -> Result<Outcome> {
    let hooks: [fn(&Manifest, &Device) -> Option<Result<CoverageReport>>; 3] = [
        faceclip_encoders::parity::check_manifest,
        faceclip_unet::parity::check_manifest,
        faceclip_dit::parity::check_manifest,
    ];
    for hook in hooks {
        if let Some(r) = hook(manifest, device) {
            return r.map(Outcome::Manifest);
        }
    }
    Ok(Outcome::Unsupported(manifest.name.clone()))
}

/// Checks `path`: a fixture folder (has `meta.json`), a manifest (`*.json`), or a folder of
/// those (searched one level down, sorted by name).
pub fn check_path(path: &Path, device: &Device) -> Vec<Checked> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    if path.is_dir() {
        if path.join("meta.json").is_file() {
            let outcome = Fixture::open(path).and_then(|f| run_fixture(&f, device));
            return vec![Checked {
                path: path.into(),
                name,
                outcome,
            }];
        }
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                return vec![Checked {
                    path: path.into(),
                    name,
                    outcome: Err(Error::io(path, e)),
                }];
            }
        };
        entries.sort();
        let children: Vec<PathBuf> = entries
            .into_iter()
            .filter(|p| {
                (p.is_dir() && p.join("meta.json").is_file())
                    || p.extension().is_some_and(|e| e == "json")
            })
            .collect();
        if children.is_empty() {
            return vec![Checked {
                path: path.into(),
                name,
                outcome: Err(Error::config(
                    path,
                    "neither a fixture folder (no meta.json) nor a folder of fixtures or manifests",
                )),
            }];
        }
        return children
            .iter()
            .flat_map(|c| check_path(c, device))
            .collect();
    }
    let stem = path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(name);
    let outcome = Manifest::open(path).and_then(|m| check_manifest(&m, device));
    vec![Checked {
        path: path.into(),
        name: stem,
        outcome,
    }]
}
