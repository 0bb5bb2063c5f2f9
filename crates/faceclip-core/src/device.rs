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
    // `vulkan` is wgpu with SPIR-V kernels: a build with it runs `wgpu` too.
    if cfg!(any(feature = "wgpu", feature = "vulkan")) {
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
            reason: "this build has no CPU backend; rebuild with the `flex` or `ndarray` feature"
                .into(),
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
            #[cfg(any(feature = "wgpu", feature = "vulkan"))]
            {
                use burn::tensor::DeviceKind;
                Ok(Device::wgpu(match index {
                    Some(i) => DeviceKind::DiscreteGpu(i),
                    None => DeviceKind::DefaultDevice,
                }))
            }
            #[cfg(not(any(feature = "wgpu", feature = "vulkan")))]
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

/// What `device` runs on, for logs: on a GPU backend the adapter's own name and what its
/// kernels are compiled for (`NVIDIA H200 (ptx_sm90)`; Mesa's software Vulkan driver is
/// `llvmpipe (LLVM 15.0.6, 256 bits) (...)`), else the device itself. Opens the device
/// ([`set_precision`] still applies after it, as after its own opening): a device that cannot
/// come up (no Vulkan driver, no adapter) is an error here, not a panic at its first use.
pub fn describe_device(device: &Device) -> Result<String> {
    #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
    {
        let d = device.clone();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || d.identity())) {
            Ok(Some(id)) => return Ok(format!("{} ({})", id.name, id.fingerprint)),
            Ok(None) => {}
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("it panicked");
                return Err(Error::Backend {
                    name: format!("{device:?}"),
                    reason: format!("the device did not come up: {why}"),
                });
            }
        }
    }
    Ok(format!("{device:?}"))
}

/// The floating-point type a device computes in (`--dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// float32: what the parity fixtures are checked in.
    #[default]
    F32,
    /// float16: half the memory; the SDXL VAE can overflow in it (the NaN guard says so).
    F16,
    /// bfloat16: half the memory, float32's range.
    BF16,
}

impl Precision {
    /// The name `--dtype` takes (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
        }
    }

    fn float_dtype(self) -> burn::tensor::FloatDType {
        use burn::tensor::FloatDType;
        match self {
            Self::F32 => FloatDType::F32,
            Self::F16 => FloatDType::F16,
            Self::BF16 => FloatDType::BF16,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            other => Err(Error::invalid(format!(
                "--dtype `{other}`: expected f32, f16 or bf16"
            ))),
        }
    }
}

/// Makes `precision` the float type of every tensor later created on `device` (weights are
/// converted as they load). Call it before anything touches the device: burn fixes a device's
/// types at its first tensor. F32 on an untouched device is a no-op.
pub fn set_precision(device: &mut Device, precision: Precision) -> Result<()> {
    let dtype = precision.float_dtype();
    let name = format!("{device:?}");
    if precision == Precision::F32 && device.settings().float_dtype == dtype {
        return Ok(());
    }
    if !device.supports_dtype(dtype) {
        return Err(Error::Backend {
            name,
            reason: format!("does not compute in {} (try --dtype f32)", precision.name()),
        });
    }
    device.configure(dtype).map_err(|e| Error::Backend {
        name,
        reason: format!("cannot switch to {}: {e}", precision.name()),
    })
}
