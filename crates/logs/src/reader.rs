//! Where a followed container's lines come from: its json-file (the fast path) or the logs API.

use std::collections::BTreeMap;

use crate::api::ApiFollower;
use crate::jsonfile::Line;
use crate::tail::{Batch, Position, Tailer};

#[derive(Debug)]
pub(crate) enum Reader {
    File(Tailer),
    Api(ApiFollower),
}

impl Reader {
    pub(crate) fn read(&mut self, max_bytes: usize) -> std::io::Result<Batch> {
        match self {
            Self::File(t) => t.read(max_bytes),
            Self::Api(a) => Ok(a.read(max_bytes)),
        }
    }

    pub(crate) fn position(&self) -> &Position {
        match self {
            Self::File(t) => t.position(),
            Self::Api(a) => a.position(),
        }
    }

    fn position_mut(&mut self) -> &mut Position {
        match self {
            Self::File(t) => t.position_mut(),
            Self::Api(a) => a.position_mut(),
        }
    }

    /// Multiline entries being joined (kept in the position).
    pub(crate) fn groups_mut(&mut self) -> &mut BTreeMap<String, crate::multiline::Group> {
        &mut self.position_mut().groups
    }

    /// Lines whose last piece never came (the container is gone), as they are.
    pub(crate) fn flush(&mut self) -> Vec<Line> {
        self.position_mut().joiner.flush()
    }
}
