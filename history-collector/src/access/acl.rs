//! Spark's view ACLs, decided exactly as its History Server decides them
//! (`FsHistoryProvider.createSecurityManager` over `SecurityManager.checkUIViewPermissions`):
//!
//! - an application's view users are the server's admins, the application's own admins
//!   (`spark.admin.acls`), its Spark user (the `User` of its start event), and its
//!   `spark.ui.view.acls`; its view groups are the server's admin groups, its own
//!   `spark.admin.acls.groups` and its `spark.ui.view.acls.groups`;
//! - the application's settings are read from its first environment update, as Spark does;
//!   its own `spark.acls.enable` is not consulted (the server's setting decides, as
//!   `spark.history.ui.acls.enable` does);
//! - a user may view if ACLs are off, or the user (or `*`) is a view user, or `*` is a view
//!   group, or one of the user's groups is a view group.
//!
//! Spark lets a request without a user through ("authentication is off"). Here a request
//! without an authenticated user never reaches a check while ACLs are on: it is refused
//! before (see [`super::viewer`]), so a client that bypasses the proxy sees nothing.

/// The wildcard that lets every user (or group) in.
const WILDCARD: &str = "*";

/// Splits a comma-separated ACL list as Spark does: trimmed, empties dropped.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// An application's own ACL settings (from its first environment update).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppAcls {
    pub view_users: Vec<String>,
    pub view_groups: Vec<String>,
    pub admin_users: Vec<String>,
    pub admin_groups: Vec<String>,
}

impl AppAcls {
    /// The ACL settings among an application's Spark properties.
    pub fn from_properties(props: &[(String, String)]) -> Self {
        let get = |k: &str| {
            props
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| split_list(v))
                .unwrap_or_default()
        };
        AppAcls {
            view_users: get("spark.ui.view.acls"),
            view_groups: get("spark.ui.view.acls.groups"),
            admin_users: get("spark.admin.acls"),
            admin_groups: get("spark.admin.acls.groups"),
        }
    }
}

/// The server's own settings (`spark.history.ui.acls.enable`, `spark.history.ui.admin.acls`,
/// `spark.history.ui.admin.acls.groups`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerAcls {
    pub enabled: bool,
    pub admin_users: Vec<String>,
    pub admin_groups: Vec<String>,
}

/// An authenticated user and the groups the proxy said they are in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl ServerAcls {
    /// Whether `user` may view an application run by `spark_user` with `app` settings
    /// (`None`: it logged no environment, so it has none).
    pub fn may_view(&self, user: &User, spark_user: &str, app: Option<&AppAcls>) -> bool {
        if !self.enabled {
            return true;
        }
        let empty = AppAcls::default();
        let app = app.unwrap_or(&empty);
        let users = self
            .admin_users
            .iter()
            .chain(&app.admin_users)
            .chain(&app.view_users)
            .map(String::as_str)
            .chain(std::iter::once(spark_user));
        let mut groups = self
            .admin_groups
            .iter()
            .chain(&app.admin_groups)
            .chain(&app.view_groups);
        for u in users {
            if u == WILDCARD || u == user.name {
                return true;
            }
        }
        groups.any(|g| g == WILDCARD || user.groups.iter().any(|ug| ug == g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn props(kv: &[(&str, &str)]) -> AppAcls {
        AppAcls::from_properties(
            &kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn as_sparks_history_server_decides() {
        let server = ServerAcls {
            enabled: true,
            admin_users: vec!["root".into()],
            admin_groups: vec!["ops".into()],
        };
        let app = props(&[
            ("spark.ui.view.acls", " bob , ,carol"),
            ("spark.ui.view.acls.groups", "analysts"),
            ("spark.admin.acls", "dave"),
            ("spark.admin.acls.groups", "leads"),
            // ignored by the History Server: the server's switch decides
            ("spark.acls.enable", "false"),
        ]);
        let yes = |u: &User| server.may_view(u, "alice", Some(&app));
        assert!(yes(&user("alice", &[])), "the Spark user");
        assert!(yes(&user("bob", &[])) && yes(&user("carol", &[])));
        assert!(yes(&user("dave", &[])), "an application admin");
        assert!(yes(&user("root", &[])), "a server admin");
        assert!(yes(&user("x", &["analysts"])) && yes(&user("y", &["leads"])));
        assert!(yes(&user("z", &["ops"])), "a server admin group");
        assert!(!yes(&user("eve", &["interns"])));
        assert!(!yes(&user("Alice", &[])), "names are compared exactly");
        // no environment logged: the Spark user and admins only
        assert!(server.may_view(&user("alice", &[]), "alice", None));
        assert!(!server.may_view(&user("bob", &[]), "alice", None));
        // wildcards
        let open = props(&[("spark.ui.view.acls", "*")]);
        assert!(server.may_view(&user("eve", &[]), "alice", Some(&open)));
        let open_groups = props(&[("spark.ui.view.acls.groups", "*")]);
        assert!(server.may_view(&user("eve", &[]), "alice", Some(&open_groups)));
        // off: everyone
        let off = ServerAcls::default();
        assert!(off.may_view(&user("eve", &[]), "alice", Some(&app)));
    }
}
