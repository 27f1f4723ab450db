//! The info lines rabbitmqctl prints before (or instead of) a verb's
//! result, verb by verb.
use super::*;

impl Ctx<'_, '_> {
    /// The info line(s) rabbitmqctl prints before running the verb.
    pub(super) fn banner(&self) -> Vec<String> {
        let node = &self.node;
        let vhost = self.vhost();
        let a0 = self.operand(0);
        let a1 = self.operand(1);
        let line = match self.verb.name {
            "list_users" => "Listing users ...".to_string(),
            "list_vhosts" => "Listing vhosts ...".to_string(),
            "list_permissions" => format!("Listing permissions for vhost \"{vhost}\" ..."),
            "list_user_permissions" => format!("Listing permissions for user \"{a0}\" ..."),
            "list_queues" => {
                return vec![
                    format!(
                        "Timeout: {} seconds ...",
                        erl_float(self.timeout_ms() as f64 / 1000.0)
                    ),
                    format!("Listing queues for vhost {vhost} ..."),
                ]
            }
            "list_exchanges" => format!("Listing exchanges for vhost {vhost} ..."),
            "list_bindings" => format!("Listing bindings for vhost {vhost}..."),
            "list_connections" => "Listing connections ...".to_string(),
            "list_channels" => "Listing channels ...".to_string(),
            "list_consumers" => format!("Listing consumers in vhost {vhost} ..."),
            "add_user" => format!("Adding user \"{a0}\" ..."),
            "delete_user" => format!("Deleting user \"{a0}\" ..."),
            "change_password" => format!("Changing password for user \"{a0}\" ..."),
            "authenticate_user" => format!("Authenticating user \"{a0}\" ..."),
            "set_user_tags" => format!(
                "Setting tags for user \"{a0}\" to [{}] ...",
                self.operands[1..].join(", ")
            ),
            "add_vhost" => format!("Adding vhost \"{a0}\" ..."),
            "delete_vhost" => format!("Deleting vhost \"{a0}\" ..."),
            "set_permissions" => {
                format!("Setting permissions for user \"{a0}\" in vhost \"{vhost}\" ...")
            }
            "clear_permissions" => {
                format!("Clearing permissions for user \"{a0}\" in vhost \"{vhost}\" ...")
            }
            "set_policy" | "set_operator_policy" => format!(
                "Setting {} \"{a0}\" for pattern \"{a1}\" to \"{}\" with priority \"{}\" for vhost \"{vhost}\" ...",
                if self.verb.name == "set_policy" {
                    "policy"
                } else {
                    "operator policy override"
                },
                self.operand(2),
                self.p.int("priority").unwrap_or(0)
            ),
            "clear_policy" => format!("Clearing policy \"{a0}\" on vhost \"{vhost}\" ..."),
            "clear_operator_policy" => {
                format!("Clearing operator policy \"{a0}\" on vhost \"{vhost}\" ...")
            }
            "list_policies" => format!("Listing policies for vhost \"{vhost}\" ..."),
            "list_operator_policies" => {
                format!("Listing operator policy overrides for vhost \"{vhost}\" ...")
            }
            "purge_queue" => format!("Purging queue '{a0}' in vhost '{vhost}' ..."),
            "delete_queue" => {
                let mut conds = Vec::new();
                if self.p.flag("if_empty") {
                    conds.push("if queue is empty ");
                }
                if self.p.flag("if_unused") {
                    conds.push("if queue is unused ");
                }
                format!(
                    "Deleting queue '{a0}' on vhost '{vhost}' {}...",
                    conds.join("and ")
                )
            }
            "close_connection" => format!("Closing connection {a0}, reason: {a1}..."),
            "close_all_connections" => {
                if self.p.flag("global") {
                    format!(
                        "Closing all connections to node {node} (across all vhosts), reason: {a0}..."
                    )
                } else {
                    match self.p.int("limit").unwrap_or(0) {
                        0 => format!("Closing all connections in vhost {vhost}, reason: {a0}..."),
                        n => format!("Closing {n} connections in vhost {vhost}, reason: {a0}..."),
                    }
                }
            }
            "status" => format!("Status of node {node} ..."),
            "stop" if self.operands.len() == 1 => format!(
                "Stopping and halting node {node} (will monitor pid file {a0}) ..."
            ),
            "stop" => format!("Stopping and halting node {node} ..."),
            "stop_app" => format!("Stopping rabbit application on node {node} ..."),
            "reload_certificates" => format!("Reloading TLS certificates on node {node} ..."),
            "start_app" => format!("Starting node {node} ..."),
            "reset" => format!("Resetting node {node} ..."),
            "export_definitions" => {
                format!("Exporting definitions in JSON to a file at \"{a0}\" ...")
            }
            "import_definitions" if self.operands.is_empty() => {
                "Importing definitions in JSON from standard input ...".to_string()
            }
            "import_definitions" => {
                format!("Importing definitions in JSON from a file at \"{a0}\" ...")
            }
            "ping" => format!(
                "Will ping {node}. This only checks if the OS process is running and registered with epmd. Timeout: {} ms.",
                self.timeout_ms()
            ),
            "check_running" => format!("Checking if RabbitMQ is running on node {node} ..."),
            "check_local_alarms" => {
                format!("Asking node {node} to report any local resource alarms ...")
            }
            "check_port_connectivity" => {
                format!("Testing TCP connections to all active listeners on node {node} ...")
            }
            _ => return Vec::new(),
        };
        vec![line]
    }

    /// Prints the info line if it is due and not suppressed.
    pub(super) fn flush_banner(&mut self) {
        if !self.banner_pending {
            return;
        }
        self.banner_pending = false;
        if self.quiet() || self.formatter != Fmt::Table {
            return;
        }
        for line in self.banner() {
            self.outln(&line);
        }
    }
}
