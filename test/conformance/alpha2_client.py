"""A client written from the protocol spec (core0-protocol.md §3, §14.1), behaving like the
alpha-2 Python client: RPUSH core:default, RPOPLPUSH the flag to check the job is known, then
BRPOPLPUSH result:<id> in 10-second slices. Uses only Debian's python3-redis.

usage: alpha2_client.py <unix socket> host
       alpha2_client.py <unix socket> container <flist>
Prints one JSON document with what it observed."""
import json
import sys
import uuid

import redis


class JobNotFound(Exception):
    pass


class Response:
    def __init__(self, client, id):
        self.client, self.id = client, id

    def exists(self):
        flag = 'result:%s:flag' % self.id
        return self.client.redis.rpoplpush(flag, flag) is not None

    def get(self, timeout=10):
        queue = 'result:%s' % self.id
        waited = 0
        while waited < timeout:
            # the alpha-2 client first waits for the flag (pickup), then checks it in each slice
            flag = 'result:%s:flag' % self.id
            if self.client.redis.brpoplpush(flag, flag, 10) is None:
                raise JobNotFound(self.id)
            r = self.client.redis.brpoplpush(queue, queue, 10)
            if r is not None:
                return json.loads(r)
            waited += 10
        raise TimeoutError(self.id)


class Client:
    def __init__(self, socket):
        self.redis = redis.Redis(unix_socket_path=socket)
        for _ in range(3):
            if self.redis.ping():
                break

    def raw(self, command, arguments, queue=None, max_time=None):
        id = str(uuid.uuid4())
        self.redis.rpush('core:default', json.dumps(
            {'id': id, 'command': command, 'arguments': arguments, 'queue': queue, 'max_time': max_time}))
        return Response(self, id)

    def sync(self, command, arguments, timeout=10):
        r = self.raw(command, arguments).get(timeout)
        if r['state'] != 'SUCCESS':
            raise RuntimeError('invalid response: %s' % r['state'], r)
        return r

    def json(self, command, arguments, timeout=10):
        r = self.sync(command, arguments, timeout)
        if r['level'] != 20:
            raise RuntimeError('invalid result level, expecting json(20) got (%d)' % r['level'])
        return json.loads(r['data'])

    def system(self, command, dir='', stdin='', env=None):
        parts = command.split()
        return self.raw('core.system', {'name': parts[0], 'args': parts[1:], 'dir': dir, 'stdin': stdin, 'env': env})


class ContainerClient(Client):
    def __init__(self, client, container):
        self.parent, self.container = client, container
        self.redis = client.redis

    def raw(self, command, arguments, queue=None, max_time=None):
        r = self.parent.sync('corex.dispatch', {'container': self.container, 'command': {
            'command': command, 'arguments': arguments, 'queue': queue, 'max_time': max_time}})
        return Response(self.parent, json.loads(r['data']))


def host(c):
    out = {'ping': c.json('core.ping', {})}
    r = c.system('echo hello world').get()
    out['system'] = {'state': r['state'], 'stdout': r['streams'][0], 'starttime': r['starttime'], 'level': r['level']}
    u = c.raw('no.such.cmd', {}).get()
    out['unknown'] = {'state': u['state'], 'data': u['data']}
    out['cpu_keys'] = sorted(c.json('info.cpu', {})[0].keys())
    try:
        Response(c, str(uuid.uuid4())).get()
        out['notfound'] = False
    except JobNotFound:
        out['notfound'] = True
    return out


def container(c, flist):
    create = c.raw('corex.create', {'root': flist, 'mount': None, 'host_network': False, 'nics': [{'type': 'default'}],
                                    'port': None, 'hostname': 'py', 'privileged': False, 'storage': None, 'tags': ['py']})
    r = create.get(60)
    out = {'create_state': r['state'], 'create_level': r['level']}
    if r['state'] != 'SUCCESS':
        out['create_data'] = r['data']
        return out
    cid = json.loads(r['data'])
    out['id'] = cid
    out['list_keys'] = sorted(c.json('corex.list', {}).keys())
    cc = ContainerClient(c, cid)
    res = cc.system('hostname').get(30)
    out['dispatch'] = {'state': res['state'], 'stdout': res['streams'][0], 'container': res['container']}
    out['terminate'] = c.sync('corex.terminate', {'container': cid}, 60)['state']
    return out


if __name__ == '__main__':
    cl = Client(sys.argv[1])
    doc = host(cl) if sys.argv[2] == 'host' else container(cl, sys.argv[3])
    print(json.dumps(doc))
