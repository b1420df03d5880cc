fn main() {
    println!("kustos");
}
