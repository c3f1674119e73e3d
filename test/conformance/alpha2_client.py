"""A client written from the protocol spec (core0-protocol.md §3, §14.1), behaving like the
alpha-2 Python client: RPUSH core:default, RPOPLPUSH the flag to check the job is known, then
BRPOPLPUSH result:<id> in 10-second slices. Uses only Debian's python3-redis.

usage: alpha2_client.py <unix socket> host
       alpha2_client.py <unix socket> container <flist>
       alpha2_client.py <unix socket> calls '[["disk", "list", [args], {kwargs}], ...]'
Prints one JSON document with what it observed (for calls: one {"ok": value} or
{"error": message} per call, the message being what the client raised)."""
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

    @property
    def disk(self):
        return DiskManager(self)

    @property
    def btrfs(self):
        return BtrfsManager(self)

    @property
    def zerotier(self):
        return ZerotierManager(self)

    @property
    def bridge(self):
        return BridgeManager(self)

    def system(self, command, dir='', stdin='', env=None):
        parts = command.split()
        return self.raw('core.system', {'name': parts[0], 'args': parts[1:], 'dir': dir, 'stdin': stdin, 'env': env})


class _Manager:
    def __init__(self, client):
        self._client = client

    def _ext(self, command, args, what):
        # as the alpha-2 client: a failed call raises with the result's stderr
        result = self._client.raw(command, args).get(60)
        if result['state'] != 'SUCCESS':
            raise RuntimeError('%s: %s' % (what, result['streams'][1]))
        return result

    def _json(self, command, args, what, empty):
        result = self._ext(command, args, what)
        if result['level'] != 20:
            raise RuntimeError('invalid response type from %s command' % command)
        data = result['data'].strip()
        return json.loads(data) if data else empty


class DiskManager(_Manager):
    def list(self, include_loop=False):
        # include_loop is ours (loop devices are the tests' disks); the original sends {}
        return self._json('disk.list', {'include_loop': True} if include_loop else {}, 'failed to list disks', {})

    def mktable(self, disk, table_type='gpt'):
        self._ext('disk.mktable', {'disk': disk, 'table_type': table_type}, 'failed to create table')

    def getinfo(self, disk, part=''):
        return self._json('disk.getinfo', {'disk': disk, 'part': part}, 'failed to get info', {})

    def mkpart(self, disk, start, end, part_type='primary'):
        self._ext('disk.mkpart', {'disk': disk, 'start': start, 'end': end, 'part_type': part_type}, 'failed to create partition')

    def rmpart(self, disk, number):
        self._ext('disk.rmpart', {'disk': disk, 'number': number}, 'failed to remove partition')

    def mount(self, source, target, options=[]):
        if len(options) == 0:
            options = ['']
        self._ext('disk.mount', {'options': ','.join(options), 'source': source, 'target': target}, 'failed to mount device')

    def umount(self, source):
        self._ext('disk.umount', {'source': source}, 'failed to umount device')


class BtrfsManager(_Manager):
    def list(self):
        return self._json('btrfs.list', {}, 'failed to list btrfs', [])

    def info(self, mountpoint):
        return self._json('btrfs.info', {'mountpoint': mountpoint}, 'failed to get btrfs info', {})

    def create(self, label, devices, metadata_profile="", data_profile="", overwrite=False):
        self._ext('btrfs.create', {'label': label, 'metadata': metadata_profile, 'data': data_profile,
                                   'devices': devices, 'overwrite': overwrite}, 'failed to create btrfs')

    def device_add(self, mountpoint, *device):
        self._ext('btrfs.device_add', {'mountpoint': mountpoint, 'devices': list(device)}, 'failed to add device')

    def device_remove(self, mountpoint, *device):
        self._ext('btrfs.device_remove', {'mountpoint': mountpoint, 'devices': list(device)}, 'failed to remove device')

    def subvol_create(self, path):
        self._ext('btrfs.subvol_create', {'path': path}, 'failed to create subvolume')

    def subvol_list(self, path):
        return self._json('btrfs.subvol_list', {'path': path}, 'failed to list subvolumes', [])

    def subvol_delete(self, path):
        self._ext('btrfs.subvol_delete', {'path': path}, 'failed to delete subvolume')

    def subvol_quota(self, path, limit):
        self._ext('btrfs.subvol_quota', {'path': path, 'limit': limit}, 'failed to set quota')

    def subvol_snapshot(self, source, destination, read_only=False):
        self._ext('btrfs.subvol_snapshot', {'source': source, 'destination': destination, 'read_only': read_only},
                  'failed to create snapshot')


class ZerotierManager(_Manager):
    def join(self, network):
        self._ext('zerotier.join', {'network': network}, 'failed to join zerotier network')

    def leave(self, network):
        self._ext('zerotier.leave', {'network': network}, 'failed to leave zerotier network')

    def list(self):
        return self._json('zerotier.list', {}, 'failed to list zerotier networks', [])


class BridgeManager(_Manager):
    def create(self, name, hwaddr=None, network=None, nat=False, settings={}):
        self._ext('bridge.create', {'name': name, 'hwaddr': hwaddr,
                                    'network': {'mode': network, 'nat': nat, 'settings': settings}}, 'failed to create bridge')

    def list(self):
        return self._json('bridge.list', {}, 'failed to list bridges', [])

    def delete(self, bridge):
        self._ext('bridge.delete', {'name': bridge}, 'failed to delete bridge')


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
    listed = c.json('corex.list', {})
    out['list_keys'] = sorted(listed.keys())
    entry = listed[str(cid)]
    # the Python types of the entry's fields, as a client of the original sees them
    out['list_types'] = {k: type(v).__name__ for k, v in entry.items()}
    out['list_container_types'] = {k: type(v).__name__ for k, v in entry['container'].items()}
    cc = ContainerClient(c, cid)
    res = cc.system('hostname').get(30)
    out['dispatch'] = {'state': res['state'], 'stdout': res['streams'][0], 'container': res['container']}
    out['terminate'] = c.sync('corex.terminate', {'container': cid}, 60)['state']
    return out


def calls(c, script):
    out = []
    for manager, method, args, kwargs in json.loads(script):
        try:
            out.append({'ok': getattr(getattr(c, manager), method)(*args, **kwargs)})
        except RuntimeError as e:
            out.append({'error': str(e.args[0])})
    return out


if __name__ == '__main__':
    cl = Client(sys.argv[1])
    mode = sys.argv[2]
    doc = host(cl) if mode == 'host' else calls(cl, sys.argv[3]) if mode == 'calls' else container(cl, sys.argv[3])
    print(json.dumps(doc))
