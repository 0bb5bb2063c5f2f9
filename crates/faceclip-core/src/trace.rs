//! [`Trace`]: the one hook through which every model reports its intermediate values, named
//! as the parity fixtures' `mid.*` tensors, for debugging parity.

use burn::tensor::{Tensor, TensorData};

/// Named intermediate values of a forward pass, `(name, data)` in the order they were
/// recorded. A [`Trace::disabled`] one (also [`Trace::default`]) records nothing and costs
/// nothing: [`Trace::record`] only calls its closure when recording.
///
/// ```
/// use faceclip_core::{Trace, TensorData};
///
/// let mut trace = Trace::recording();
/// trace.set_prefix("l.");
/// trace.record("x", || TensorData::new(vec![1.0f32, 2.0], [2]));
/// assert_eq!(trace.get("l.x").unwrap().num_elements(), 2);
///
/// let mut off = Trace::disabled();
/// off.record("x", || unreachable!("never evaluated when disabled"));
/// assert!(off.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Trace {
    enabled: bool,
    prefix: String,
    entries: Vec<(String, TensorData)>,
}

impl Trace {
    /// A trace that records nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// A trace that records everything it is given.
    pub fn recording() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }

    /// True when [`Trace::record`] keeps what it is given (a model may skip work that only
    /// the trace needs when this is false).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Names recorded from now on start with `prefix` (`""` for none).
    pub fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
    }

    /// The prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Records `data()` under the prefix followed by `name`; `data` is only called when
    /// recording.
    pub fn record(&mut self, name: impl AsRef<str>, data: impl FnOnce() -> TensorData) {
        if self.enabled {
            self.entries
                .push((format!("{}{}", self.prefix, name.as_ref()), data()));
        }
    }

    /// [`Trace::record`] of a tensor's values (read back to the host only when recording).
    pub fn record_tensor<const D: usize>(&mut self, name: impl AsRef<str>, t: &Tensor<D>) {
        self.record(name, || t.clone().into_data());
    }

    /// Everything recorded, in order.
    pub fn entries(&self) -> &[(String, TensorData)] {
        &self.entries
    }

    /// The first value recorded under `name` (prefix included).
    pub fn get(&self, name: &str) -> Option<&TensorData> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    /// How many values were recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The recorded values, in order.
    pub fn into_entries(self) -> Vec<(String, TensorData)> {
        self.entries
    }
}

impl IntoIterator for Trace {
    type Item = (String, TensorData);
    type IntoIter = std::vec::IntoIter<(String, TensorData)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a Trace {
    type Item = &'a (String, TensorData);
    type IntoIter = std::slice::Iter<'a, (String, TensorData)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}
