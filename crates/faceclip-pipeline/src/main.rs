//! The `faceclip` command-line program.

fn main() {
    eprintln!("faceclip: the pipelines are not ported yet; see README.md");
    std::process::exit(2);
}
