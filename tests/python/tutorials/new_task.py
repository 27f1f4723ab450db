#!/usr/bin/env python
"""Tutorial 2, producer: queue a task; each '.' in it costs a second of work."""
import sys

import pika

from amqp_env import AMQP_HOST, AMQP_PORT

QUEUE = "task_queue"


def main(argv):
    task = " ".join(argv) or "Hello World!"
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT))
    try:
        ch = conn.channel()
        # The queue survives a broker restart, and so does the message.
        ch.queue_declare(queue=QUEUE, durable=True)
        persistent = pika.BasicProperties(delivery_mode=2)
        ch.basic_publish(exchange="", routing_key=QUEUE, body=task, properties=persistent)
        print(" [x] Sent %r" % task)
    finally:
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1:])
