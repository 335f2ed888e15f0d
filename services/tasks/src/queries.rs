//! The read side's port: what the tasks service asks of its read model.

pub trait TasksQueries: Send + Sync + 'static {}
