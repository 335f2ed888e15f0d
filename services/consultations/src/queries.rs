//! The read side's port: what the consultations service asks of its read model.

pub trait ConsultationsQueries: Send + Sync + 'static {}
