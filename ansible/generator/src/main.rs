//! Writes the generated files of the `ferrite.virt` collection (see the library docs).

use ferrite::schema::Registry;

fn main() {
    let reg = match Registry::load() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("schema does not load: {e}");
            std::process::exit(1);
        }
    };
    let root = ferrite_ansible_gen::collection_dir();
    for (path, text) in ferrite_ansible_gen::generate(&reg) {
        let p = root.join(&path);
        if let Some(dir) = p.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("{}: {e}", dir.display());
                std::process::exit(1);
            }
        }
        if let Err(e) = std::fs::write(&p, text) {
            eprintln!("{}: {e}", p.display());
            std::process::exit(1);
        }
        println!("wrote {path}");
    }
}
