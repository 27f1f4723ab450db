#!/usr/bin/env python
"""Tutorial 2, worker: take one task at a time, "work", then acknowledge."""
import sys
import time

import pika

from amqp_env import AMQP_HOST, AMQP_PORT

QUEUE = "task_queue"


def handle_task(channel, method, properties, body):
    task = body.decode()
    print(" [x] Received %r" % task)
    time.sleep(task.count("."))
    print(" [x] Done")
    # Only now may the broker forget the task; a worker dying earlier
    # gets it handed to someone else.
    channel.basic_ack(delivery_tag=method.delivery_tag)


def main():
    conn = pika.BlockingConnection(pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT))
    ch = conn.channel()
    ch.queue_declare(queue=QUEUE, durable=True)
    # Fair dispatch: no new task while the current one is unacknowledged.
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume(queue=QUEUE, on_message_callback=handle_task)
    print(" [*] Waiting for messages. To exit press CTRL+C")
    ch.start_consuming()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
