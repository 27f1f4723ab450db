#!/usr/bin/env python
"""Tutorial 6, client: call fib(30) on the RPC server and wait for the answer."""
import sys
import uuid

import pika

from amqp_env import AMQP_HOST, AMQP_PORT

REQUEST_QUEUE = "rpc_queue"


class RemoteFibonacci:
    """Sends requests to REQUEST_QUEUE; replies come back on a private queue."""

    def __init__(self, conn):
        self.conn = conn
        self.channel = conn.channel()
        declared = self.channel.queue_declare(queue="", exclusive=True)
        self.reply_queue = declared.method.queue
        self.channel.basic_consume(
            queue=self.reply_queue, on_message_callback=self._on_reply, auto_ack=True)
        self.waiting = set()    # correlation ids of calls still in flight
        self.replies = {}

    def _on_reply(self, channel, method, props, body):
        # Anything not answering one of our calls (e.g. a late duplicate) is dropped.
        if props.correlation_id in self.waiting:
            self.waiting.discard(props.correlation_id)
            self.replies[props.correlation_id] = body

    def __call__(self, n):
        call_id = str(uuid.uuid4())
        self.waiting.add(call_id)
        self.channel.basic_publish(
            exchange="",
            routing_key=REQUEST_QUEUE,
            properties=pika.BasicProperties(reply_to=self.reply_queue, correlation_id=call_id),
            body=str(n),
        )
        while call_id not in self.replies:
            self.conn.process_data_events(time_limit=None)
        return int(self.replies.pop(call_id))


def main():
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT))
    try:
        fibonacci = RemoteFibonacci(conn)
        print(" [x] Requesting fib(30)")
        print(" [.] Got %r" % fibonacci(30))
    finally:
        conn.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(1)
