"""Linux AF_UNIX SOCK_SEQPACKET: a peer that closes with our data unread -> what recv sees (once?)."""
import socket
for unread_answers in (1, 50):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for i in range(3): b.send(b"record%d" % i)        # sender's records
    for i in range(unread_answers): a.send(b"answer")  # receiver's answers, never read
    b.close()
    a.setblocking(False)
    seen = []
    for _ in range(10):
        try:
            m = a.recv(100); seen.append(m)
            if not m: break
        except ConnectionResetError: seen.append("ECONNRESET")
        except BlockingIOError: seen.append("EAGAIN"); break
    # our answers after the close
    try: a.send(b"late"); late = "sent"
    except OSError as e: late = type(e).__name__
    try: seen.append(a.recv(100))
    except OSError as e: seen.append(type(e).__name__)
    print(unread_answers, seen, "send after:", late)
