fn main() {
    let data = std::fs::read(std::env::args().nth(1).unwrap()).unwrap();
    let docs = kustos::formats::yaml::parse::parse(&data, false).unwrap();
    let out = kustos::formats::yaml::emit::emit(&docs, 4);
    print!("{out}");
    println!("----");
    println!(
        "{:?}",
        kustos::formats::yaml::parse::parse(out.as_bytes(), false).map(|_| ())
    );
}
