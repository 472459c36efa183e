//! The commands of the OCI lifecycle: create, start, run, kill, delete, and
//! the read-only ones (state, list).

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod kill;
pub mod pause;
pub mod query;
pub mod run;
pub mod start;
pub mod update;
pub mod wait;

pub use create::{create, CreateOptions, Created};
pub use delete::delete;
pub use events::events;
pub use exec::{exec, ExecOptions};
pub use kill::kill;
pub use pause::{pause, ps, resume, PsFormat};
pub use query::{list, state, ListFormat};
pub use run::run;
pub use start::start;
pub use update::{update, UpdateFlags};
