//! How `run` fails before or outside a leadership, and the exit code of each.

use crate::client::SetupError;
use crate::exit;
use crate::lock::LockError;
use crate::settings;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot serve health on {0}: {1}. Choose another --health-addr")]
    Health(std::net::SocketAddr, std::io::Error),
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Setup(e) => e.exit_code(),
            RunError::Health(..) => exit::CONFIG,
            RunError::Lock(_) => exit::API,
            RunError::Signals(_) => exit::OS,
            RunError::Service(e) => e.exit_code(),
        }
    }
}

impl crate::exit::Failure for RunError {
    fn exit_code(&self) -> u8 {
        RunError::exit_code(self)
    }
}

impl From<settings::SettingsError> for RunError {
    fn from(e: settings::SettingsError) -> Self {
        RunError::Setup(e.into())
    }
}
