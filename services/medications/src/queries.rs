//! The read side's port: what the medications service asks of its read model.

pub trait MedicationsQueries: Send + Sync + 'static {}
