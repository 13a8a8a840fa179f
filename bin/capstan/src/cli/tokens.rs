//! `capstan tokens`: API tokens with roles (list, create, revoke), and `capstan audit`: every
//! request that changed something.

use capstan_model::{AuditLog, CreatedToken, ExitStatus, NewToken, Role, TokenList};
use clap::{Args, Subcommand, ValueEnum};

use super::client::Client;
use super::table::Table;
use super::{Failure, local_time, print_json};
use crate::Output;

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    pub command: Option<TokensCommand>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Read everything, plan deploys, test alert rules.
    Viewer,
    /// Also deploy, roll back, take down, build, scan.
    Operator,
    /// Also tokens, alert rules, advisories, the audit log.
    Admin,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a token; its secret is printed this once (capstan keeps only its hash).
    Create {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Revoke a token: it stops working at once.
    Revoke { name: String },
}

pub async fn run(args: TokensArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    match args.command {
        Some(TokensCommand::Create { name, role, output }) => {
            let role = role_of(role);
            let made: CreatedToken = client
                .post("/api/v1/tokens", &NewToken { name, role })
                .await?;
            if output == Output::Json {
                return print_json(&made);
            }
            println!("{}", made.token);
            eprintln!(
                "token {:?} ({}): keep it now, it is not shown again",
                made.info.name,
                made.info.role.as_str()
            );
            Ok(())
        }
        Some(TokensCommand::Revoke { name }) => {
            client.delete(&format!("/api/v1/tokens/{name}")).await?;
            println!("token {name:?} revoked");
            Ok(())
        }
        None => {
            let list: TokenList = client.get("/api/v1/tokens", &[]).await?;
            if args.output == Output::Json {
                return print_json(&list);
            }
            let mut table = Table::new(&["NAME", "ROLE", "CREATED", "BY", "LAST USED", "REVOKED"]);
            let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or_else(|| "-".to_owned(), local_time)
            };
            for t in &list.tokens {
                table.row(vec![
                    t.name.clone(),
                    t.role.as_str().to_owned(),
                    local_time(t.created),
                    t.created_by.clone(),
                    when(t.last_used),
                    when(t.revoked),
                ]);
            }
            table.print();
            if list.tokens.is_empty() {
                println!(
                    "no tokens but the admin token (capstan tokens create NAME --role viewer)"
                );
            }
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// From (a duration ago or an RFC 3339 time).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many entries (default 100).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

pub async fn audit(args: AuditArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let mut query = Vec::new();
    if let Some(s) = &args.since {
        query.push(("since", s.clone()));
    }
    if let Some(l) = args.limit {
        query.push(("limit", l.to_string()));
    }
    let log: AuditLog = client.get("/api/v1/audit", &query).await?;
    if args.output == Output::Json {
        return print_json(&log);
    }
    let mut table = Table::new(&["TIME", "WHO", "ROLE", "REQUEST", "STATUS", "FROM"]);
    for e in &log.entries {
        table.row(vec![
            local_time(e.time),
            e.who.clone(),
            e.role.as_str().to_owned(),
            format!("{} {}", e.method, e.path),
            e.status.to_string(),
            e.remote.clone(),
        ]);
    }
    table.print();
    Ok(())
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: Option<UsersCommand>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user who signs in to the dashboard, or give one a new role and password (their
    /// sessions end). The password is read from the first line of stdin (12 characters or
    /// more); capstan keeps its argon2 hash.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Remove a user; their sessions end.
    Remove { name: String },
}

fn role_of(r: RoleArg) -> Role {
    match r {
        RoleArg::Viewer => Role::Viewer,
        RoleArg::Operator => Role::Operator,
        RoleArg::Admin => Role::Admin,
    }
}

pub async fn users(args: UsersArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    match args.command {
        Some(UsersCommand::Add { name, role }) => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).map_err(|e| {
                Failure::new(
                    ExitStatus::Usage,
                    format!("cannot read the password from stdin: {e}"),
                )
            })?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            let user: capstan_model::User = client
                .post(
                    "/api/v1/users",
                    &capstan_model::NewUser {
                        name,
                        role: role_of(role),
                        password,
                    },
                )
                .await?;
            println!("user {:?} ({})", user.name, user.role.as_str());
            Ok(())
        }
        Some(UsersCommand::Remove { name }) => {
            client.delete(&format!("/api/v1/users/{name}")).await?;
            println!("user {name:?} removed");
            Ok(())
        }
        None => {
            let list: capstan_model::UserList = client.get("/api/v1/users", &[]).await?;
            if args.output == Output::Json {
                return print_json(&list);
            }
            let mut table = Table::new(&["NAME", "ROLE", "CREATED", "BY"]);
            for u in &list.users {
                table.row(vec![
                    u.name.clone(),
                    u.role.as_str().to_owned(),
                    local_time(u.created),
                    u.created_by.clone(),
                ]);
            }
            table.print();
            Ok(())
        }
    }
}
