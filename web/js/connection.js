//  The STOMP session over WebSocket: one @stomp/stompjs Client that
//  reconnects by itself. stompjs forgets subscriptions when a socket
//  closes, so what the app wants subscribed is kept here as "watches" and
//  subscribed again on every CONNECTED, each with headers computed at that
//  moment (a room's since-seq is the highest seq the page holds then).
import { Client, ReconnectionTimeMode } from '../vendor/stompjs/index.js';

const brokerUrl = () => `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;

export class Connection {
    //  headers(): the CONNECT headers, or null to stay disconnected (signed out)
    //  onOnline(session), onOffline(), onError(message, receiptId)
    constructor ({ headers, onOnline, onOffline, onError }) {
        this.handlers = { onOnline, onOffline, onError };
        this.watches = new Map();           //  key -> { destination, onMessage, headers }
        this.subscriptions = new Map();     //  key -> stompjs subscription of this session
        this.session = 0;                   //  counts CONNECTEDs: which socket a send went out on
        this.client = new Client({
            brokerURL: brokerUrl(),
            reconnectDelay: 1000,
            reconnectTimeMode: ReconnectionTimeMode.EXPONENTIAL,
            maxReconnectDelay: 8000,
            connectionTimeout: 15000,
            heartbeatIncoming: 10000,
            heartbeatOutgoing: 10000,
            debug: () => {},
            //  Runs before every (re)connect: a renewed token is used at once
            beforeConnect: async (client) => {
                const connectHeaders = await headers();
                if (connectHeaders) client.connectHeaders = connectHeaders;
                else await client.deactivate();
            },
            onConnect: () => this.connected(),
            onWebSocketClose: () => this.closed(),
            onStompError: (frame) => this.handlers.onError(frame.headers.message ?? 'server error',
                frame.headers['receipt-id'] ?? null),
        });
    }

    get online () { return this.client.connected; }

    start () { this.client.activate(); }

    async stop () {
        this.watches.clear();
        await this.client.deactivate();
    }

    connected () {
        this.session++;
        this.subscriptions.clear();
        for (const key of this.watches.keys()) this.subscribe(key);
        this.handlers.onOnline(this.session);
    }

    closed () {
        this.subscriptions.clear();
        this.handlers.onOffline();
    }

    subscribe (key) {
        const watch = this.watches.get(key);
        const subscription = this.client.subscribe(watch.destination, watch.onMessage, watch.headers());
        this.subscriptions.set(key, subscription);
    }

    //  Keep destination subscribed under key, now if connected and again
    //  after every reconnect. A watch under the same key is replaced.
    watch (key, destination, onMessage, headers = () => ({})) {
        this.unwatch(key);
        this.watches.set(key, { destination, onMessage, headers });
        if (this.online) this.subscribe(key);
    }

    unwatch (key) {
        this.watches.delete(key);
        const subscription = this.subscriptions.get(key);
        this.subscriptions.delete(key);
        if (subscription && this.online) subscription.unsubscribe();
    }

    //  Send now if connected; says whether it went out
    publish (destination, body, headers = {}) {
        if (!this.online) return false;
        this.client.publish({ destination, body: JSON.stringify(body), headers });
        return true;
    }

    //  Send with a receipt header; onReceipt(frame) when the server answers
    publishWithReceipt (destination, body, receipt, onReceipt) {
        if (!this.online) return false;
        this.client.watchForReceipt(receipt, onReceipt);
        return this.publish(destination, body, { receipt });
    }
}
