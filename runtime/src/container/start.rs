//! Starting a created container's payload.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::SystemTime;

use crate::state::{State, Status, START_FIFO};
use crate::{Error, Result};

use super::Container;

impl Container {
    /// Lets the payload run.
    pub fn start(&mut self) -> Result<()> {
        if self.state.current_status() != Status::Created || self.state.started_at.is_some() {
            return Err(self.bad_status("only a created container can be started"));
        }
        let fifo = State::dir(&self.root, &self.state.id).join(START_FIFO);
        // Non-blocking: ENXIO means no reader, i.e. the init is gone.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .map_err(|e| Error::Init {
                id: self.state.id.clone(),
                msg: format!("init is not waiting on {}: {e}", fifo.display()),
            })?;
        f.write_all(&[1]).map_err(|e| Error::io(&fifo, e))?;
        drop(f);
        let _ = std::fs::remove_file(&fifo);
        self.state.status = Status::Running;
        self.state.started_at = Some(SystemTime::now());
        self.state.save(&self.root)
    }
}
