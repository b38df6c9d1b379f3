//! `loadgen`: the rate-controlled load generator. Not built yet (it is the subject of the
//! loadgen issue); this binary only says so, and exits with an error.

fn main() {
    eprintln!(
        "loadgen is not implemented yet; use `cargo run --release -p fastpay-sim` to run the \
         committee simulation"
    );
    std::process::exit(2);
}
