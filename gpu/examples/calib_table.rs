//! Prints the calibration table (`cargo run -p lpu-gpu --example calib_table`).
fn main() {
    print!("{}", lpu_gpu::calib::markdown_table());
}
