/// Why a service cannot be turned into containers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value is not usable (a size, a duration, a cpu count...).
    #[error("services.{service}.{key}: {message}")]
    Value {
        /// The service.
        service: String,
        /// The key path inside it.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The service is not in the project.
    #[error("no service named {0:?} in the project")]
    NoService(String),
}
