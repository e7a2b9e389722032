fn main() {
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path).unwrap();
        let a = meshwork_compiler::analyze(meshwork_compiler::source::SourceFile::new(path.clone(), text));
        print!("{}", meshwork_compiler::diagnostic::render_plain(&a.file, &a.diagnostics));
        println!("{path}: diags={} network={}", a.diagnostics.len(), a.network.is_some());
    }
}
