//! Read access control, as Spark's History Server does it: who the user is (a trusted
//! proxy's header, [`viewer`]) and whether they may view an application (the application's
//! own view and admin ACLs plus the server's admin ACLs, [`acl`]). Applied by the API
//! (the event-log zips included) path by path, and to the UI and the container logs by
//! [`crate::server::gate`]; like Spark's server, the application list and an application's
//! summary are not per-application checked, every other per-application path is.

pub mod acl;
pub mod viewer;

pub use acl::{AppAcls, ServerAcls, User};
pub use viewer::{AccessConfig, Cidr, Viewer};
