fn main() {
    let path = std::env::args().nth(1).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let a = meshwork_compiler::analyze(meshwork_compiler::source::SourceFile::new(path, text));
    print!("{}", meshwork_compiler::diagnostic::render_plain(&a.file, &a.diagnostics));
    println!("errors={} network={}", a.has_errors(), a.network.is_some());
}
