//! `parapet`: the command line is [`parapet::cli`]; here only the allocator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(parapet::cli::main())
}
