#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("simulate") {
        std::process::exit(lingma_gateway::simulator::main(&args[1..]));
    }
}
