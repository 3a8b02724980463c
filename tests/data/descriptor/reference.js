// Usage: node reference.js MODEL_DIR chip*.png > face_api_js.json (see README.md).
// Reference descriptors from face-api.js 0.22.2 (tfjs-core CPU backend) for PNG chips (150x150 RGB).
const faceapi = require('face-api.js');
const tf = faceapi.tf;
const fs = require('fs');
const { PNG: Png } = require('pngjs');
const PNG = (f) => Png.sync.read(fs.readFileSync(f));
async function main() {
  const [modelDir, ...files] = process.argv.slice(2);
  await tf.setBackend('cpu');
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  const out = {};
  for (const f of files) {
    const { width, height, data } = PNG(f);
    const rgb = new Float32Array(width * height * 3);
    for (let i = 0; i < width * height; i++) for (let c = 0; c < 3; c++) rgb[i * 3 + c] = data[i * 4 + c];
    const t = tf.tensor3d(rgb, [height, width, 3]);
    const d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(t);
    out[require('path').basename(f)] = Array.from(d);
  }
  console.log(JSON.stringify(out));
}
main();
