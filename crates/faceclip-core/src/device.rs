//! Backend selection at run time: a name (`cpu`, `flex`, `ndarray`, `wgpu`, `vulkan`,
//! `cuda`, `cuda:1`) becomes a burn [`Device`]; a backend this build left out is a clear
//! error naming the cargo feature that enables it.

use burn::tensor::Device;

use crate::error::{Error, Result};

/// The backends compiled into this build, in the order `faceclip --help` lists them.
pub fn available_backends() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "flex") {
        v.push("flex");
    }
    if cfg!(feature = "ndarray") {
        v.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    if cfg!(feature = "vulkan") {
        v.push("vulkan");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    v
}

/// The CPU backend used when none is named: `flex` (measured faster, see benches/README.md),
/// else `ndarray`.
pub fn default_cpu_backend() -> Option<&'static str> {
    if cfg!(feature = "flex") {
        Some("flex")
    } else if cfg!(feature = "ndarray") {
        Some("ndarray")
    } else {
        None
    }
}

/// The device used when none is named: the default CPU backend.
pub fn default_device() -> Result<Device> {
    match default_cpu_backend() {
        Some(name) => parse_device(name),
        None => Err(Error::Backend {
            name: "cpu".into(),
            reason: "this build has no CPU backend; rebuild with the `flex` or `ndarray` feature".into(),
        }),
    }
}

fn missing(name: &str, feature: &str) -> Error {
    Error::Backend {
        name: name.into(),
        reason: format!(
            "not compiled into this build; rebuild with `--features {feature}` (available: {})",
            available_backends().join(", ")
        ),
    }
}

/// Parses a backend name into a device; see the module docs.
pub fn parse_device(name: &str) -> Result<Device> {
    let lower = name.trim().to_ascii_lowercase();
    let (kind, index) = match lower.split_once(':') {
        Some((k, i)) => {
            let idx: usize = i.parse().map_err(|_| Error::Backend {
                name: name.into(),
                reason: format!("`{i}` is not a device index"),
            })?;
            (k.to_string(), Some(idx))
        }
        None => (lower.clone(), None),
    };
    let _ = index;
    match kind.as_str() {
        "cpu" => default_device(),
        "flex" => {
            #[cfg(feature = "flex")]
            {
                Ok(Device::flex())
            }
            #[cfg(not(feature = "flex"))]
            Err(missing(name, "flex"))
        }
        "ndarray" => {
            #[cfg(feature = "ndarray")]
            {
                #[allow(deprecated)]
                Ok(Device::ndarray())
            }
            #[cfg(not(feature = "ndarray"))]
            Err(missing(name, "ndarray"))
        }
        "wgpu" | "gpu" => {
            #[cfg(feature = "wgpu")]
            {
                use burn::tensor::DeviceKind;
                Ok(Device::wgpu(match index {
                    Some(i) => DeviceKind::DiscreteGpu(i),
                    None => DeviceKind::DefaultDevice,
                }))
            }
            #[cfg(not(feature = "wgpu"))]
            Err(missing(name, "wgpu"))
        }
        "vulkan" => {
            #[cfg(feature = "vulkan")]
            {
                use burn::tensor::DeviceKind;
                Ok(Device::vulkan(match index {
                    Some(i) => DeviceKind::DiscreteGpu(i),
                    None => DeviceKind::DefaultDevice,
                }))
            }
            #[cfg(not(feature = "vulkan"))]
            Err(missing(name, "vulkan"))
        }
        "cuda" => {
            #[cfg(feature = "cuda")]
            {
                Ok(Device::cuda(index.unwrap_or(0)))
            }
            #[cfg(not(feature = "cuda"))]
            Err(missing(name, "cuda"))
        }
        _ => Err(Error::Backend {
            name: name.into(),
            reason: format!(
                "unknown backend; expected one of cpu, flex, ndarray, wgpu, vulkan, cuda, cuda:N (this build has: {})",
                available_backends().join(", ")
            ),
        }),
    }
}
