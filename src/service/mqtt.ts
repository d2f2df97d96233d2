import type { MqttSettings } from '../config/schema.js';
import { type BrokerConfig, supervisorMqtt } from '../config/supervisor.js';
import { ProbeError, toProbeError } from '../errors.js';
import type { Logger } from '../log.js';
import { MqttPublisher, type PublisherOptions } from '../mqtt/publisher.js';

/** Which broker: the url setting, else the Supervisor's, else none (MQTT off). */
export async function resolveBroker(
  m: MqttSettings,
  env: NodeJS.ProcessEnv,
): Promise<(BrokerConfig & { ca?: string; tlsInsecure?: boolean }) | undefined> {
  if (m.enabled === 'off') return undefined;
  const tls = { ...(m.ca ? { ca: m.ca } : {}), tlsInsecure: m.tls_insecure };
  if (m.url)
    return {
      url: m.url,
      ...(m.username ? { username: m.username } : {}),
      ...(m.password ? { password: m.password } : {}),
      ...tls,
    };
  if (!env.SUPERVISOR_TOKEN && !env.HASSIO_TOKEN) {
    if (m.enabled === 'on')
      throw new ProbeError(
        'BP_ERR_CONFIG',
        'mqtt.enabled is on but no mqtt.url is set and there is no Supervisor',
      );
    return undefined;
  }
  // The user's credentials win over the Supervisor's when both exist.
  const sup = await supervisorMqtt(env);
  return {
    ...sup,
    ...(m.username ? { username: m.username } : {}),
    ...(m.password ? { password: m.password } : {}),
    ...tls,
  };
}

/** The MQTT side of a service: the publisher once a broker is known, asked for again while none is. */
export interface MqttPart {
  publisher(): MqttPublisher | undefined;
  stop(): Promise<void>;
}

/**
 * Connects to the broker when there is one. A broker the Supervisor does not have yet (Mosquitto still
 * starting, or not installed) is asked for again every minute; a configuration error fails the start.
 */
export async function startMqtt(
  m: MqttSettings,
  env: NodeJS.ProcessEnv,
  options: Omit<PublisherOptions, 'broker'>,
  log: Logger,
): Promise<MqttPart> {
  let publisher: MqttPublisher | undefined;
  let retry: NodeJS.Timeout | undefined;
  let stopped = false;
  const connect = async (): Promise<void> => {
    let broker: Awaited<ReturnType<typeof resolveBroker>>;
    try {
      broker = await resolveBroker(m, env);
    } catch (err) {
      const e = toProbeError(err, 'BP_ERR_SUPERVISOR');
      if (e.code === 'BP_ERR_CONFIG') throw e;
      log.warn({ code: e.code, err: e.detail }, 'no MQTT broker yet; asking again in 60 s');
      if (!stopped) retry = setTimeout(() => void connect().catch(() => {}), 60_000);
      return;
    }
    if (!broker || stopped) {
      if (!broker) log.info('MQTT off (no broker configured)');
      return;
    }
    if (broker.provider) log.info({ provider: broker.provider }, 'MQTT broker from the Supervisor');
    publisher = new MqttPublisher({ ...options, broker });
    publisher.start();
  };
  await connect();
  return {
    publisher: () => publisher,
    async stop() {
      stopped = true;
      clearTimeout(retry);
      await publisher?.stop();
    },
  };
}
