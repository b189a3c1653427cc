//! The example server (`examples/axum_server.rs`) over loopback HTTP: `GET /me` with a bearer
//! session token (a session validation, a permission read and JSON), and `POST /login` at
//! OWASP's default argon2id parameters, each from 1 and from 16 concurrent clients.
//!
//! `cargo bench --bench web`; the figures are requests per second (criterion's throughput).

#[allow(dead_code)]
#[path = "../examples/axum_server.rs"]
mod server;

use std::sync::Arc;

use criterion::{Criterion, Throughput};
use redkeep::{AsyncRedkeep, NewUser, Options, Secret};
use serde_json::json;

struct NoMail;

impl server::Mailer for NoMail {
    fn password_reset(&self, _email: &str, _token: &Secret) {}
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (base, token) = rt.block_on(async {
        // OWASP's argon2id parameters: the login figures include the real hashing cost.
        let ark = AsyncRedkeep::open(dir.path().to_path_buf(), Options::default())
            .await
            .unwrap();
        // One account per concurrent client: lockout admits at most 10 attempts on one
        // account at a time (each counts as a failure until its password proves right).
        for i in 0..16 {
            ark.users()
                .create(NewUser {
                    email: format!("bench{i}@example.com"),
                    password: Some("bench password".into()),
                    ..NewUser::default()
                })
                .await
                .unwrap();
        }
        let login = ark
            .sessions()
            .login(
                "bench0@example.com".into(),
                "bench password",
                Default::default(),
            )
            .await
            .unwrap();
        let app = server::router(server::AppState {
            ark,
            mailer: Arc::new(NoMail),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, login.token.expose().to_string())
    });
    let http = reqwest::Client::new();
    let me = |n: usize| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        async move {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n {
                let req = http.get(format!("{base}/me")).bearer_auth(&token);
                set.spawn(async move {
                    let r = req.send().await.unwrap();
                    assert!(r.status().is_success());
                    r.bytes().await.unwrap();
                });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
        }
    };
    let login = |n: usize| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..n {
                let req = http.post(format!("{base}/login")).json(
                    &json!({"login": format!("bench{i}@example.com"), "password": "bench password"}),
                );
                set.spawn(async move {
                    let r = req.send().await.unwrap();
                    assert!(r.status().is_success());
                    r.bytes().await.unwrap();
                });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
        }
    };
    let mut g = c.benchmark_group("web");
    for clients in [1usize, 16] {
        g.throughput(Throughput::Elements(clients as u64));
        g.bench_function(format!("me/{clients}_clients"), |b| {
            b.iter(|| rt.block_on(me(clients)))
        });
    }
    g.sample_size(10);
    for clients in [1usize, 16] {
        g.throughput(Throughput::Elements(clients as u64));
        g.bench_function(format!("login/{clients}_clients"), |b| {
            b.iter(|| rt.block_on(login(clients)))
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
