// Hypercore appends for `seconds`, with `writers` appends in flight, each one entry of
// `bytes` bytes (one signed append per entry, as credfed signs one envelope per record).
// Prints one JSON line. Usage: node append.js SECONDS WRITERS DIR [BYTES]
const Hypercore = require('hypercore')

async function main () {
  const [seconds, writers, dir, bytes] = [
    Number(process.argv[2] || 5), Number(process.argv[3] || 1), process.argv[4], Number(process.argv[5] || 300)
  ]
  if (!dir) throw new Error('usage: node append.js SECONDS WRITERS DIR [BYTES]')
  const core = new Hypercore(dir)
  await core.ready()
  const end = Date.now() + seconds * 1000
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  let appends = 0
  async function writer (w) {
    let i = 0
    while (Date.now() < end) {
      await core.append(Buffer.alloc(bytes, (w * 31 + i++) % 256))
      appends++
    }
  }
  await Promise.all(Array.from({ length: writers }, (_, w) => writer(w)))
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)
  const length = core.length
  await core.close()
  if (length !== appends) throw new Error(`core holds ${length} entries, ${appends} appended`)
  console.log(JSON.stringify({
    hypercore: require('hypercore/package.json').version,
    writers,
    appends,
    seconds: elapsed,
    rate: appends / elapsed,
    cpu_us_per_append: (cpu.user + cpu.system) / appends
  }))
}

main().catch((e) => { console.error(e); process.exit(1) })
