//! `lingma-gateway`: see `--help`.
#![forbid(unsafe_code)]

use lingma_gateway::{cli, process};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match cli::parse(&args) {
        Ok(cli::Command::Serve(a)) => process::serve(&a),
        Ok(cli::Command::CheckConfig(a)) => process::check_config(&a),
        Ok(cli::Command::LoginUrl(a, instance)) => process::login_url(&a, &instance),
        Ok(cli::Command::Simulate(rest)) => simulate(&rest),
        Ok(cli::Command::Help) => {
            print!("{}", cli::help());
            0
        }
        Ok(cli::Command::Version) => {
            println!("lingma-gateway {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Err(e) => {
            eprintln!("lingma-gateway: {e}");
            2
        }
    };
    std::process::exit(code);
}

/// `lingma-gateway simulate ...`: the bundled Lingma simulator.
#[cfg(feature = "simulator")]
fn simulate(args: &[String]) -> i32 {
    lingma_simulator::main(args)
}

/// A build without the simulator says so instead of pretending to be one.
#[cfg(not(feature = "simulator"))]
fn simulate(_args: &[String]) -> i32 {
    eprintln!("lingma-gateway simulate: {}", cli::NO_SIMULATOR);
    2
}
