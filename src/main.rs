//! `parapet`: the command line is [`parapet::cli`]; here only the allocator.

#[global_allocator]
static GLOBAL: parapet::allocator::Allocator = parapet::allocator::Allocator;

fn main() {
    std::process::exit(parapet::cli::main())
}
