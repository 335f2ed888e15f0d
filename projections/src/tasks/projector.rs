//! Applies tasks commits to its read models.

use carelog_kernel::Aggregate as _;
use carelog_kernel::envelope::StoredCommit;
use carelog_kernel::store::ContextStream;
use carelog_tasks::domain::TaskList;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::projection::{Projection, ProjectionError};

#[derive(Debug, Default)]
pub struct TasksProjection;

impl Projection for TasksProjection {
    fn name(&self) -> &'static str {
        super::NAME
    }

    fn streams(&self) -> Vec<String> {
        vec![ContextStream::new(TaskList::CONTEXT).name]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn apply<'a>(
        &'a self,
        _tx: &'a mut PgConnection,
        _stream: &'a str,
        _batch: &'a [StoredCommit],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        async move { Ok(()) }.boxed()
    }
}
