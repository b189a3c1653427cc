use redkeep::{NewUser, Options, PasswordParams, Redkeep};
fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let dir = std::path::PathBuf::from("/tmp/scratch/ws");
    let _ = std::fs::remove_dir_all(&dir);
    let rk = Redkeep::open(
        &dir,
        Options::default().password(PasswordParams::INSECURE_FAST),
    )
    .unwrap();
    let u = rk
        .users()
        .create(NewUser {
            email: "a@example.com".into(),
            ..NewUser::default()
        })
        .unwrap()
        .user;
    rk.workspaces().save_piece(u.id, b"{}").unwrap();
    rk.workspaces()
        .update(u.id, |d| {
            d.notes = serde_json::json!(["x"]);
            Ok(())
        })
        .unwrap();
    eprintln!("MARK");
    let t = std::time::Instant::now();
    for _ in 0..n {
        if what == "piece" {
            rk.workspaces()
                .save_piece(u.id, br#"{"title":"a piece","strokes":[[1,2],[3,4]]}"#)
                .unwrap();
        } else {
            rk.workspaces()
                .update(u.id, |d| {
                    d.notes = serde_json::json!(["a note"]);
                    Ok(())
                })
                .unwrap();
        }
    }
    eprintln!("END {:?}/op", t.elapsed() / n as u32);
}
