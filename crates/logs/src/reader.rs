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

    pub(crate) fn groups_mut(&mut self) -> &mut BTreeMap<String, crate::multiline::Group> {
        match self {
            Self::File(t) => t.groups_mut(),
            Self::Api(a) => a.groups_mut(),
        }
    }

    pub(crate) fn flush(&mut self) -> Vec<Line> {
        match self {
            Self::File(t) => t.flush(),
            Self::Api(a) => a.flush(),
        }
    }
}
