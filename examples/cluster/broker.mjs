// One aedes node of the test bed's broker cluster: sessions, subscriptions and queued QoS 1
// messages in the shared Redis (aedes-persistence-redis), publishes fanned out to the other
// nodes through it (mqemitter-redis), so a client may resume on either node.
//
//   node broker.mjs PORT REDIS_PORT NAME
import { createServer } from 'node:net'
import { Aedes } from 'aedes'
import persistence from 'aedes-persistence-redis'
import mqemitter from 'mqemitter-redis'

const [port, redisPort, name] = process.argv.slice(2)
const redis = { host: '127.0.0.1', port: Number(redisPort) }
const broker = await Aedes.createBroker({
  id: name,
  persistence: persistence(redis),
  mq: mqemitter(redis)
})
broker.on('clientError', (client, err) => console.error(`${name}: client ${client.id}: ${err.message}`))
const server = createServer(broker.handle)
server.listen(Number(port), '127.0.0.1', () => console.log(`${name} listening on 127.0.0.1:${port}`))

const stop = () => {
  server.close()
  broker.close(() => process.exit(0))
  // A client that never closes must not keep the node alive.
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
